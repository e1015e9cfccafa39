/**
 * A budget's metrics and traces, exported over OTLP; its thresholds, turned
 * into alerts.
 *
 * Every budget reports gauges and counters (`budget_tokens_used`,
 * `budget_usd_remaining`, `budget_exceeded_total`, ...) labelled
 * `budget = <path>`, and a reservation made inside a traced operation gets a
 * `Budget.reserve` span. Nothing here is specific to this library: effect's
 * own OTLP exporters pick both up once their layers are provided.
 *
 *   npx tsx examples/observability.ts
 *
 * sends them to an OTLP/HTTP collector at http://localhost:4318, such as
 *
 *   docker run --rm -p 4318:4318 otel/opentelemetry-collector
 *
 * With no collector listening the export fails quietly: the exporter retries,
 * gives up and logs at Debug level (hidden by default). The demo runs all the
 * same, and exits a few seconds late while the final export times out.
 *
 * Tests import `observability` and `run` and hand in an `HttpClient` of their
 * own (see test/observability.test.ts).
 */
import { Console, Effect, Layer, Stream } from "effect"
import { FetchHttpClient } from "effect/http"
import type { HttpClient } from "effect/http"
import { OtlpMetrics, OtlpSerialization, OtlpTracer } from "effect/observability"
import { realpathSync } from "node:fs"
import { pathToFileURL } from "node:url"
import { Budget } from "../src/index.ts"
import type { BudgetService, ThresholdCrossed, Usage } from "../src/index.ts"

// --- export -----------------------------------------------------------------

/** OTLP export of metrics and traces, over the given HTTP client. */
export const observability = (
  httpClient: Layer.Layer<HttpClient.HttpClient>,
  baseUrl = "http://localhost:4318"
) => {
  const resource = { serviceName: "llm-gateway", serviceVersion: "0.1.0" }
  return Layer.mergeAll(
    // Budget metrics are read from the counters at each export: the interval
    // is how fresh the dashboards are, at no cost to the calls themselves.
    OtlpMetrics.layer({ url: `${baseUrl}/v1/metrics`, resource, exportInterval: "10 seconds" }),
    OtlpTracer.layer({ url: `${baseUrl}/v1/traces`, resource })
  ).pipe(
    Layer.provide(OtlpSerialization.layerJson),
    Layer.provide(httpClient)
  )
}

// --- alerts -----------------------------------------------------------------

/** Warns once for each threshold crossed by `budget` or any budget below it. */
export const alertOnThresholds = (budget: BudgetService) =>
  budget.events.pipe(
    Stream.filter((event): event is ThresholdCrossed => event._tag === "ThresholdCrossed"),
    Stream.runForEach((event) =>
      Effect.logWarning(`${event.budget} has used ${Math.round(event.threshold * 100)}% of its ${event.axis} cap`).pipe(
        Effect.annotateLogs({ budget: event.budget, axis: event.axis, used: event.used, cap: event.cap })
      )
    )
  )

// --- budgets ----------------------------------------------------------------

// The whole organisation's month, and one tenant's day within it.
const Org = Budget.layer({ name: "org", tokenCap: 5_000_000, usdCap: 50, window: "30 days" })
const TenantA = Budget.layerChild("tenant-a", { tokenCap: 10_000, usdCap: 0.1, window: "1 day" })

// Alerts on the root see every tenant's thresholds, for as long as the
// budgets live. Starting the fiber at once subscribes it before any spending:
// events are only delivered from the moment of subscribing.
const Alerts = Layer.effectDiscard(
  Effect.flatMap(Budget, (org) => Effect.forkScoped(alertOnThresholds(org), { startImmediately: true }))
)

/** The tenant's budget as `Budget`, with the org above it and alerts on both. */
export const Budgets = Layer.merge(TenantA, Alerts).pipe(Layer.provide(Org))

// --- the workload -----------------------------------------------------------

// A made-up model: dollars per token, and the completion limit we ask for.
const inputUsdPerToken = 3 / 1_000_000
const outputUsdPerToken = 15 / 1_000_000
const maxOutputTokens = 800

const price = (input: number, output: number): Usage => ({
  tokens: input + output,
  usd: input * inputUsdPerToken + output * outputUsdPerToken
})

/** The simulated calls: prompt and answer sizes, and latency. */
export const calls = [
  { prompt: 1200, output: 400, latencyMs: 30 },
  { prompt: 900, output: 650, latencyMs: 45 },
  { prompt: 1500, output: 300, latencyMs: 25 },
  { prompt: 1100, output: 700, latencyMs: 50 },
  { prompt: 800, output: 500, latencyMs: 35 },
  { prompt: 1000, output: 450, latencyMs: 30 },
  // Does not fit what is left of the tenant's day: refused before it starts.
  { prompt: 1300, output: 600, latencyMs: 40 }
] as const

type Call = (typeof calls)[number]

// Each call is a span; the hold taken inside it gets a `Budget.reserve` child.
const llmCall = Effect.fn("llm.call")(
  function*(call: Call) {
    const budget = yield* Budget
    // Hold the most the call can cost, then charge what it really did.
    yield* budget.withReservation(price(call.prompt, maxOutputTokens), (hold) =>
      Effect.andThen(Effect.sleep(call.latencyMs), hold.commit(price(call.prompt, call.output))))
  },
  Effect.catchTag("BudgetExceeded", (e) => Effect.logInfo(`skipped: ${e.message}`))
)

/** A few calls against the tenant's budget; returns its final snapshot. */
export const program = Effect.gen(function*() {
  yield* Effect.forEach(calls, llmCall, { discard: true })
  return yield* (yield* Budget).snapshot
})

/**
 * The workload with its budgets and exporters. The exporters sit inside the
 * budgets, not around them: a budget takes its metrics away when it closes,
 * so the exporters must close first, with their final export.
 */
export const run = (httpClient: Layer.Layer<HttpClient.HttpClient>) =>
  program.pipe(
    Effect.provide(observability(httpClient)),
    Effect.provide(Budgets)
  )

// --- entry point: only when run directly, not when imported by a test -----

const isMain = process.argv[1] !== undefined &&
  import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href

if (isMain) {
  const main = run(FetchHttpClient.layer).pipe(
    Effect.flatMap((s) =>
      Console.log(`tenant-a used ${s.tokensUsed} of ${s.tokenCap} tokens, $${s.usdUsed.toFixed(4)} of $${s.usdCap}`)
    )
  )
  Effect.runPromise(main).catch((error: unknown) => {
    console.error(error)
    process.exitCode = 1
  })
}
