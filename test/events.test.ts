/**
 * Events and metrics of the memory store beyond the contract's
 * (src/internal/testing/contract.ts, which has every event in order, and
 * thresholds once per axis until a reset): an overage in a Committed event,
 * which budgets' streams see a child's events, thresholds and Reset events
 * of windows, and gauges read without a snapshot.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import { TestClock } from "effect/testing"
import { Budget, type BudgetEvent, type BudgetService } from "../src/index.ts"
import { yields as settle } from "../src/BudgetStoreContract.ts"
import { series } from "../src/internal/testing/metrics.ts"

/** Starts collecting `budget`'s events; the returned effect stops and reads them. */
const listen = (budget: BudgetService) =>
  Effect.gen(function*() {
    const seen: Array<BudgetEvent> = []
    const fiber = yield* Effect.forkChild(Stream.runForEach(budget.events, (event) => Effect.sync(() => seen.push(event))))
    yield* settle
    return Effect.as(Effect.andThen(settle, Fiber.interrupt(fiber)), seen)
  })

const tags = (events: ReadonlyArray<BudgetEvent>) => events.map((e) => `${e._tag} ${e.budget}`)

describe("events", () => {
  it.effect("a commit past the cap reports its overage", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "b", tokenCap: 10, thresholds: [] })
      const stop = yield* listen(budget)
      yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 10 }), (r) => r.commit({ tokens: 14 })))
      const committed = (yield* stop).find((e) => e._tag === "Committed")
      assert.strictEqual(committed?._tag === "Committed" && committed.tokensOverage, 4)
    }))

  it.effect("a child's events reach its ancestors, not its siblings", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org" })
      const a = yield* org.child("a")
      const b = yield* org.child("b")
      const [onOrg, onA] = [yield* listen(org), yield* listen(a)]
      yield* a.record({ tokens: 1 })
      yield* b.record({ tokens: 1 })
      yield* org.record({ tokens: 1 })
      assert.deepStrictEqual(tags(yield* onOrg), ["Recorded org/a", "Recorded org/b", "Recorded org"])
      assert.deepStrictEqual(tags(yield* onA), ["Recorded org/a"])
    }))

  it.effect("each threshold fires once per window per axis", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(new Date("2026-03-10T00:00:00Z").getTime())
      const budget = yield* Budget.make({ name: "b", tokenCap: 100, usdCap: 1, window: "1 day" })
      const stop = yield* listen(budget)
      yield* budget.record({ tokens: 49 })
      yield* budget.record({ tokens: 1 }) // 50%
      yield* budget.record({ tokens: 10 })
      yield* budget.record({ tokens: 35, usd: 0.96 }) // 95% of tokens jumps past 80% too; 95% of usd
      yield* budget.record({ tokens: 5 })
      yield* TestClock.adjust("1 day")
      yield* budget.record({ tokens: 80 }) // the new window: 50% and 80% again
      const crossed = (yield* stop).flatMap((e) => e._tag === "ThresholdCrossed" ? [`${e.axis} ${e.threshold} ${e.used}`] : [])
      assert.deepStrictEqual(crossed, [
        "tokens 0.5 50",
        "tokens 0.8 95",
        "tokens 0.95 95",
        "usd 0.5 0.96",
        "usd 0.8 0.96",
        "usd 0.95 0.96",
        "tokens 0.5 80",
        "tokens 0.8 80"
      ])
    }))

  it.effect("a window ending is a Reset event with the new window's end", () =>
    Effect.gen(function*() {
      yield* TestClock.setTime(new Date("2026-03-10T10:00:00Z").getTime())
      const budget = yield* Budget.make({ name: "b", window: "1 hour" })
      const stop = yield* listen(budget)
      yield* TestClock.adjust("1 hour")
      yield* budget.record({ tokens: 1 })
      const reset = (yield* stop)[0]
      assert.deepStrictEqual(reset, {
        _tag: "Reset",
        budget: "b",
        windowEndsAt: new Date("2026-03-10T12:00:00Z").getTime()
      })
    }))
})

describe("metrics", () => {
  it.effect("in memory, gauges read the budget's counters as they are, with no snapshot", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "live-gauges", tokenCap: 100 })
      yield* budget.record({ tokens: 10 })
      yield* Effect.scoped(budget.reserve({ tokens: 5 }))
      assert.deepStrictEqual(
        [(yield* series(budget.path))["budget_tokens_used"], (yield* series(budget.path))["budget_tokens_remaining"]],
        [10, 90]
      )
    }))
})
