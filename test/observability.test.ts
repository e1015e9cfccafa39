import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger, Metric } from "effect"
import { HttpClient, HttpClientResponse } from "effect/http"
import { calls, run } from "../examples/observability.ts"

interface Sent {
  readonly url: string
  readonly body: any
}

/** An HttpClient that keeps each request's URL and JSON body and answers 200. */
const recordingClient = () => {
  const sent: Array<Sent> = []
  const layer = Layer.succeed(
    HttpClient.HttpClient,
    HttpClient.make((request, url) =>
      Effect.sync(() => {
        const body = request.body._tag === "Uint8Array"
          ? JSON.parse(new TextDecoder().decode(request.body.body))
          : undefined
        sent.push({ url: url.toString(), body })
        return HttpClientResponse.fromWeb(request, new Response(null, { status: 200 }))
      })
    )
  )
  return { sent, layer }
}

/** A logger that keeps the warnings. */
const warningLogger = () => {
  const warnings: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    if (logLevel === "Warn") warnings.push(Array.isArray(message) ? message.join(" ") : String(message))
  })
  return { warnings, layer: Logger.layer([logger]) }
}

// OTLP/JSON attributes are `[{ key, value: { stringValue | doubleValue | ... } }]`.
const attributesOf = (keyValues: ReadonlyArray<any> = []): Record<string, unknown> =>
  Object.fromEntries(keyValues.map(({ key, value }) => [key, Object.values(value)[0]]))

const dataPoints = (sent: ReadonlyArray<Sent>, metric: string) =>
  sent.flatMap((s) =>
    s.body.resourceMetrics.flatMap((rm: any) =>
      rm.scopeMetrics.flatMap((sm: any) =>
        sm.metrics.filter((m: any) => m.name === metric).flatMap((m: any) => (m.gauge ?? m.sum).dataPoints)
      )
    )
  ) as Array<{ attributes: Array<unknown>; asDouble?: number; asInt?: number }>

const valueFor = (sent: ReadonlyArray<Sent>, metric: string, budget: string) =>
  dataPoints(sent, metric)
    .filter((point) => attributesOf(point.attributes).budget === budget)
    .map((point) => point.asDouble ?? point.asInt)

const spans = (sent: ReadonlyArray<Sent>) =>
  sent.flatMap((s) => s.body.resourceSpans.flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans))) as Array<
    { name: string; spanId: string; parentSpanId?: string; attributes: Array<unknown> }
  >

describe("examples/observability.ts", () => {
  // Live clock: the calls sleep for real (a few tens of ms each); the
  // exporters' intervals (5 s, 10 s) never fire, so what is checked is the
  // final export each makes as its layer closes.
  it.live("exports the budgets' metrics and Budget.reserve spans over OTLP, and warns at thresholds", () =>
    Effect.gen(function*() {
      const http = recordingClient()
      const log = warningLogger()
      const tenant = yield* run(http.layer).pipe(
        Effect.provide(log.layer),
        // A registry of its own: only this run's budgets are in it.
        Effect.provideService(Metric.MetricRegistry, new Map())
      )

      const metrics = http.sent.filter((s) => s.url === "http://localhost:4318/v1/metrics")
      const traces = http.sent.filter((s) => s.url === "http://localhost:4318/v1/traces")
      assert.strictEqual(metrics.length + traces.length, http.sent.length)
      assert.isAbove(metrics.length, 0)
      assert.isAbove(traces.length, 0)

      // Every call but the last was committed in full: 9,500 tokens.
      const committed = calls.slice(0, -1).reduce((sum, call) => sum + call.prompt + call.output, 0)
      assert.strictEqual(tenant.tokensUsed, committed)
      assert.strictEqual(tenant.tokensUsed, 9_500)
      assert.deepStrictEqual(valueFor(metrics, "budget_tokens_used", "org/tenant-a"), [9_500])
      assert.deepStrictEqual(valueFor(metrics, "budget_usd_used", "org/tenant-a"), [tenant.usdUsed])
      assert.deepStrictEqual(valueFor(metrics, "budget_tokens_remaining", "org/tenant-a"), [500])
      // The org counts what its tenant spent; the tenant refused the last call.
      assert.deepStrictEqual(valueFor(metrics, "budget_tokens_used", "org"), [9_500])
      assert.deepStrictEqual(valueFor(metrics, "budget_exceeded_total", "org/tenant-a"), [1])

      // One `Budget.reserve` span per call, each a child of its `llm.call`.
      const all = spans(traces)
      const reserves = all.filter((span) => span.name === "Budget.reserve")
      const llmCalls = new Set(all.filter((span) => span.name === "llm.call").map((span) => span.spanId))
      assert.strictEqual(reserves.length, calls.length)
      // The first call holds its prompt plus the 800-token completion limit.
      const { "budget.usd": heldUsd, ...first } = attributesOf(reserves[0]!.attributes)
      assert.deepStrictEqual(first, {
        "budget.path": "org/tenant-a",
        "budget.tokens": calls[0].prompt + 800,
        "budget.on_exceeded": "fail"
      })
      assert.closeTo(heldUsd as number, (calls[0].prompt * 3 + 800 * 15) / 1e6, 1e-12)
      for (const span of reserves) {
        assert.strictEqual(attributesOf(span.attributes)["budget.path"], "org/tenant-a")
        assert.isTrue(llmCalls.has(span.parentSpanId!))
      }

      // The alert fiber warned as the tenant crossed 50% and 80% of its tokens.
      assert.includeMembers(log.warnings, [
        "org/tenant-a has used 50% of its tokens cap",
        "org/tenant-a has used 80% of its tokens cap"
      ])
    }))
})
