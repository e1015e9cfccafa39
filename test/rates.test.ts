/**
 * Rates and concurrency in memory: a token bucket per axis and a limit on
 * holds in flight, checked with the caps in one step, at every level;
 * refusals that say which limit and when to retry; waiting that wakes at
 * the instant a bucket has refilled enough, on `Clock` (so `TestClock`
 * drives it).
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Duration, Effect, Exit, Fiber, Ref, Scope } from "effect"
import { TestClock } from "effect/testing"
import { Budget } from "../src/index.ts"
import type * as BudgetModule from "../src/Budget.ts"
import type { BudgetExceeded } from "../src/index.ts"
import { series } from "../src/internal/testing/metrics.ts"

const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

const refusal = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.flip(effect), (error) => error as unknown as BudgetExceeded)

describe("rates", () => {
  it.effect("a rate admits a period's worth, refills continuously, and a refusal says which limit and when", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "tpm", rate: { tokens: 1_000, per: "1 minute" } })
      yield* budget.record({ tokens: 1_000 })
      const refused = yield* refusal(budget.record({ tokens: 1 }))
      assert.deepStrictEqual(
        [refused._tag, refused.limit, refused.axis, refused.requested, refused.cap],
        ["BudgetExceeded", "rate", "tokens", 1, 1_000]
      )
      assert.strictEqual(Duration.toMillis(refused.retryAfter!), 60, "1 token of 1,000 a minute")
      assert.include(refused.message, "retry after")
      yield* TestClock.adjust("30 seconds")
      yield* budget.record({ tokens: 500 })
      assert.strictEqual((yield* refusal(budget.record({ tokens: 1 }))).limit, "rate")
      // a snapshot shows nothing of it in the caps
      assert.strictEqual((yield* budget.snapshot).tokensUsed, 1_500)
    }))

  it.effect("retryAfter is when every rate of the budget and above will admit the request", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org", rate: { tokens: 10_000, per: "1 second" } })
      const team = yield* org.child("team", { rate: { tokens: 1_000, requests: 2, per: "1 second" } })
      yield* team.record({ tokens: 500 })
      yield* org.record({ tokens: 9_000 })
      yield* team.record({ tokens: 499 })
      // team: 1 token (1 ms for 2) and no request left (500 ms for one); org: 1 token (1 ms for 2)
      const refused = yield* refusal(team.record({ tokens: 2 }))
      assert.deepStrictEqual([refused.budget, refused.limit], ["org/team", "rate"])
      assert.strictEqual(Duration.toMillis(refused.retryAfter!), 500)
      yield* TestClock.adjust("500 millis")
      yield* team.record({ tokens: 2 })
    }))

  it.effect("every record and reserve is a request", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "rpm", rate: { requests: 2, per: "1 second" } })
      yield* budget.record({})
      yield* Effect.scoped(budget.reserve({ tokens: 5 }))
      const refused = yield* refusal(budget.record({}))
      assert.deepStrictEqual([refused.limit, refused.axis], ["rate", "requests"])
      assert.strictEqual(Duration.toMillis(refused.retryAfter!), 500)
      yield* TestClock.adjust("500 millis")
      yield* budget.record({})
    }))

  it.effect("a commit gives back what its hold did not use, and takes an excess as debt", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "debt", rate: { tokens: 1_000, per: "1 minute" } })
      yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 1_000 }), (hold) => hold.commit({ tokens: 200 })))
      yield* budget.record({ tokens: 800 })
      yield* TestClock.adjust("6 seconds") // 100 back
      const settlement = yield* Effect.scoped(
        Effect.flatMap(budget.reserve({ tokens: 100 }), (hold) => hold.commit({ tokens: 600 }))
      )
      assert.strictEqual(settlement.tokens, 600, "never refused")
      // 500 of debt: 30 seconds until 1 token
      const refused = yield* refusal(budget.record({ tokens: 1 }))
      assert.strictEqual(Duration.toMillis(refused.retryAfter!), 30_060)
    }))

  it.effect("dollars have a rate too, exact to the nano-dollar", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "usd", rate: { usd: 0.3, per: "1 hour" } })
      yield* budget.record({ usd: 0.1 })
      yield* budget.record({ usd: 0.2 })
      const refused = yield* refusal(budget.record({ usd: 0.000000001 }))
      assert.deepStrictEqual([refused.limit, refused.axis, refused.cap], ["rate", "usd", 0.3])
    }))

  it.effect("burst sets how many periods' worth a bucket holds", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "burst", rate: { tokens: 600, per: "1 minute", burst: 0.1 } })
      yield* budget.record({ tokens: 60 })
      assert.strictEqual((yield* refusal(budget.record({ tokens: 1 }))).cap, 60)
      const larger = yield* refusal(Effect.scoped(budget.reserve({ tokens: 61 }, { onExceeded: "wait" })))
      assert.deepStrictEqual([larger.limit, larger.retryAfter], ["rate", undefined], "larger than the bucket: at once")
    }))

  it.effect("a waiter wakes at the instant the bucket has refilled enough, first come first served", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "wait", rate: { tokens: 100, per: "1 second" } })
      yield* budget.record({ tokens: 100 })
      const order = yield* Ref.make<Array<string>>([])
      const waiting = (name: string, tokens: number) =>
        Effect.forkChild(Effect.scoped(Effect.flatMap(
          budget.reserve({ tokens }, { onExceeded: "wait" }),
          (hold) => Effect.andThen(Ref.update(order, (o) => [...o, name]), hold.commit())
        )))
      const first = yield* waiting("first", 50)
      yield* settle
      const second = yield* waiting("second", 10)
      yield* settle
      yield* TestClock.adjust("499 millis")
      assert.isUndefined(first.pollUnsafe(), "49.9 tokens are not 50")
      assert.isUndefined(second.pollUnsafe(), "the second waits behind the first")
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(first)
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(second)
      assert.deepStrictEqual(yield* Ref.get(order), ["first", "second"])
    }))

  it.effect("a waiter moved into the line of a level held back by its rate sets its timer there", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org", rate: { tokens: 1_000, per: "1 second" } })
      const c = yield* org.child("c", { tokenCap: 100 })
      yield* c.record({ tokens: 100 })
      const waiter = yield* Effect.forkChild(Effect.scoped(c.reserve({ tokens: 50 }, { onExceeded: "wait" })))
      yield* settle
      yield* org.record({ tokens: 900 })
      // room at c, none in org's bucket: the waiter moves to org's line
      yield* c.reset
      yield* settle
      assert.isUndefined(waiter.pollUnsafe())
      yield* TestClock.adjust("50 millis")
      yield* Fiber.join(waiter)
    }))

  it.effect("a child opened per request keeps its rate and its holds in flight: it is not dropped with them", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org" })
      const perRequest = <A, E>(use: (tenant: BudgetModule.BudgetService) => Effect.Effect<A, E>) =>
        Effect.scoped(Effect.flatMap(org.child("tenant", { rate: { requests: 1, per: "1 minute" }, maxConcurrent: 1 }), use))
      yield* perRequest((tenant) => tenant.record({}))
      const refused = yield* refusal(perRequest((tenant) => tenant.record({})))
      assert.deepStrictEqual([refused.limit, refused.axis], ["rate", "requests"])
      // a hold of nothing that outlives the child's scope still holds its place
      yield* TestClock.adjust("1 minute")
      const holdScope = yield* Scope.make()
      yield* perRequest((tenant) => Scope.provide(tenant.reserve({}), holdScope))
      yield* TestClock.adjust("1 minute")
      assert.strictEqual((yield* refusal(perRequest((tenant) => Effect.scoped(tenant.reserve({}))))).limit, "concurrency")
      yield* Scope.close(holdScope, Exit.void)
    }))

  it.effect("a commit that gives back part of what a waiter needs brings its wake-up forward", () =>
    Effect.scoped(Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "sooner", rate: { tokens: 100, per: "1 second" } })
      const first = yield* budget.reserve({ tokens: 100 })
      const waiter = yield* Effect.forkChild(Effect.scoped(Effect.flatMap(
        budget.reserve({ tokens: 100 }, { onExceeded: "wait" }),
        () => Clock.currentTimeMillis
      )))
      yield* settle // its timer is set for 1 second
      yield* first.commit({ tokens: 50 }) // 50 back: 500 ms will do
      yield* settle
      yield* TestClock.adjust("500 millis")
      yield* settle
      assert.isDefined(waiter.pollUnsafe(), "woken at 500 ms, not at the second its timer was first set for")
      assert.strictEqual(yield* Fiber.join(waiter), 500)
    })))

  it.effect("an interrupted rate waiter leaves nothing in line: the next is served at its instant", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "gone", rate: { tokens: 100, per: "1 second" } })
      yield* budget.record({ tokens: 100 })
      const first = yield* Effect.forkChild(Effect.scoped(budget.reserve({ tokens: 100 }, { onExceeded: "wait" })))
      yield* settle
      const second = yield* Effect.forkChild(Effect.scoped(budget.reserve({ tokens: 10 }, { onExceeded: "wait" })))
      yield* settle
      yield* Fiber.interrupt(first)
      yield* TestClock.adjust("100 millis")
      yield* Fiber.join(second)
    }))
})

describe("maxConcurrent", () => {
  it.effect("1,000 waiting fibers on a limit of 8: never more than 8 in flight, and all finish", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org" })
      const agent = yield* org.child("agent", { maxConcurrent: 8 })
      const inFlight = yield* Ref.make(0)
      const most = yield* Ref.make(0)
      const fibers = yield* Effect.forEach(Array.from({ length: 1_000 }), () =>
        Effect.forkChild(agent.withReservation({ tokens: 1 }, (hold) =>
          Effect.gen(function*() {
            const now = yield* Ref.updateAndGet(inFlight, (n) => n + 1)
            yield* Ref.update(most, (m) => Math.max(m, now))
            yield* Effect.yieldNow
            yield* Ref.update(inFlight, (n) => n - 1)
            return yield* hold.commit()
          }), { onExceeded: "wait" })))
      yield* Fiber.joinAll(fibers)
      assert.strictEqual(yield* Ref.get(most), 8)
      assert.strictEqual((yield* org.snapshot).tokensUsed, 1_000)
    }))
})

describe("what a rate shows", () => {
  it.effect("a snapshot and the metrics show each bucket's level and the holds in flight", () =>
    Effect.scoped(Effect.gen(function*() {
      const budget = yield* Budget.make({
        name: "shown",
        rate: { tokens: 1_000, usd: 2, per: "1 minute" },
        maxConcurrent: 4
      })
      const hold = yield* budget.reserve({ tokens: 100, usd: 0.5 })
      const snap = yield* budget.snapshot
      assert.deepStrictEqual(snap.rates, [
        { axis: "tokens", available: 900, capacity: 1_000 },
        { axis: "usd", available: 1.5, capacity: 2 }
      ])
      assert.deepStrictEqual([snap.maxConcurrent, snap.inFlight], [4, 1])
      const metrics = yield* series("shown")
      assert.strictEqual(metrics["budget_in_flight"], 1)
      yield* hold.commit({ tokens: 400 })
      yield* TestClock.adjust("6 seconds")
      const later = yield* budget.snapshot
      assert.deepStrictEqual(later.rates[0], { axis: "tokens", available: 700, capacity: 1_000 }, "600 back, then 100 refilled")
      assert.strictEqual(later.inFlight, 0)
    })))
})

describe("bad rates", () => {
  const cases = [
    ["rate", { name: "r", rate: { per: "1 minute" } }],
    ["rate.tokens", { name: "r", rate: { tokens: 1.5, per: "1 minute" } }],
    ["rate.requests", { name: "r", rate: { requests: 0, per: "1 minute" } }],
    ["rate.usd", { name: "r", rate: { usd: -1, per: "1 minute" } }],
    ["rate.per", { name: "r", rate: { tokens: 10, per: "0 seconds" } }],
    ["rate.per", { name: "r", rate: { tokens: 10, per: "1500 micros" } }],
    ["rate.burst", { name: "r", rate: { tokens: 10, per: "1 minute", burst: 0 } }],
    ["rate.burst", { name: "r", rate: { requests: 5, per: "1 minute", burst: 0.1 } }],
    ["maxConcurrent", { name: "r", maxConcurrent: 0 }]
  ] as const
  for (const [field, options] of cases) {
    it.effect(`${field}: InvalidUsage naming it`, () =>
      Effect.gen(function*() {
        const exit = yield* Effect.exit(Budget.make(options as never))
        assert.isTrue(Exit.isFailure(exit))
        const error = yield* Effect.flip(Budget.make(options as never))
        assert.strictEqual(error._tag, "InvalidUsage")
        assert.include(error.message, `Invalid ${field}:`)
      }))
  }
})
