import { assert, describe, it } from "@effect/vitest"
import { Effect, Tracer } from "effect"
import { Budget } from "../src/index.ts"

const recordingTracer = () => {
  const spans: Array<Tracer.NativeSpan> = []
  const tracer = Tracer.make({
    span(options) {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { spans, tracer }
}

describe("tracing", () => {
  it.effect("a reservation inside a traced operation gets a span naming the budget and the hold", () =>
    Effect.gen(function*() {
      const { spans, tracer } = recordingTracer()
      const org = yield* Budget.make({ name: "org", tokenCap: 100 })
      const agent = yield* org.child("agent")
      yield* Effect.scoped(Effect.flatMap(agent.reserve({ tokens: 30, usd: 0.5 }, { onExceeded: "wait" }), (r) => r.commit())).pipe(
        Effect.withSpan("llm-call"),
        Effect.provideService(Tracer.Tracer, tracer)
      )
      const reserve = spans.find((span) => span.name === "Budget.reserve")
      assert.isDefined(reserve)
      const parent = reserve!.parent
      assert.strictEqual(parent._tag === "Some" && parent.value._tag === "Span" && parent.value.name, "llm-call")
      assert.deepStrictEqual(Object.fromEntries(reserve!.attributes), {
        "budget.path": "org/agent",
        "budget.tokens": 30,
        "budget.usd": 0.5,
        "budget.on_exceeded": "wait"
      })
      assert.strictEqual(reserve!.status._tag, "Ended")
    }))

  it.effect("outside any span, and with tracing disabled, no span is made", () =>
    Effect.gen(function*() {
      const { spans, tracer } = recordingTracer()
      const budget = yield* Budget.make({ name: "b" })
      yield* budget.withReservation({ tokens: 1 }, (r) => r.commit()).pipe(Effect.provideService(Tracer.Tracer, tracer))
      yield* budget.withReservation({ tokens: 1 }, (r) => r.commit()).pipe(
        Effect.withSpan("call"),
        Effect.withTracerEnabled(false),
        Effect.provideService(Tracer.Tracer, tracer)
      )
      assert.deepStrictEqual(spans.filter((s) => s.name === "Budget.reserve"), [])
    }))
})
