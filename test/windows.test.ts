import { assert, describe, it } from "@effect/vitest"
import { Cron, Effect, Fiber, Result } from "effect"
import { TestClock } from "effect/testing"
import { Budget } from "../src/index.ts"
import { yields as settle } from "../src/BudgetStoreContract.ts"

const at = (iso: string) => TestClock.setTime(new Date(iso).getTime())
const iso = (millis: number | undefined) => millis === undefined ? undefined : new Date(millis).toISOString()

describe("windows", () => {
  it.effect("a daily window starts afresh at midnight UTC", () =>
    Effect.gen(function*() {
      yield* at("2026-03-10T15:30:00Z")
      const budget = yield* Budget.make({ tokenCap: 100, window: "1 day" })
      yield* budget.record({ tokens: 90 })
      const before = yield* budget.snapshot
      assert.strictEqual(iso(before.windowEndsAt), "2026-03-11T00:00:00.000Z")
      yield* TestClock.adjust("8 hours")
      assert.strictEqual((yield* budget.snapshot).tokensUsed, 90, "still the same window at 23:30")
      yield* TestClock.adjust("30 minutes")
      const after = yield* budget.snapshot
      assert.deepStrictEqual([after.tokensUsed, iso(after.windowEndsAt)], [0, "2026-03-12T00:00:00.000Z"])
      yield* budget.record({ tokens: 100 })
    }))

  it.effect("a cron window restarts on the first of each month", () =>
    Effect.gen(function*() {
      yield* at("2026-01-20T12:00:00Z")
      const monthly = Result.getOrThrow(Cron.parse("0 0 1 * *", "UTC"))
      const budget = yield* Budget.make({ usdCap: 100, window: monthly })
      yield* budget.record({ usd: 99.5 })
      assert.strictEqual(iso((yield* budget.snapshot).windowEndsAt), "2026-02-01T00:00:00.000Z")
      const refused = yield* Effect.flip(budget.record({ usd: 1 }))
      assert.strictEqual(refused._tag, "BudgetExceeded")
      yield* at("2026-02-01T00:00:00Z")
      const feb = yield* budget.snapshot
      assert.deepStrictEqual([feb.usdUsed, iso(feb.windowEndsAt)], [0, "2026-03-01T00:00:00.000Z"])
      yield* budget.record({ usd: 1 })
    }))

  it.effect("a hold spanning a boundary is stale: its release is a no-op, its commit charges the new window", () =>
    Effect.gen(function*() {
      yield* at("2026-03-10T23:00:00Z")
      const budget = yield* Budget.make({ tokenCap: 100, window: "1 day" })
      const released = yield* budget.reserve({ tokens: 40 })
      const committed = yield* budget.reserve({ tokens: 40 })
      yield* TestClock.adjust("2 hours")
      yield* budget.reserve({ tokens: 70 })
      yield* released.release
      assert.strictEqual((yield* budget.snapshot).tokensReserved, 70)
      const settlement = yield* committed.commit({ tokens: 35 })
      // nothing of the new window was held for it: 30 free, 5 over
      assert.deepStrictEqual([settlement.tokens, settlement.tokensOverage], [35, 5])
      const snap = yield* budget.snapshot
      assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [35, 70])
    }))

  it.effect("a waiter is woken by its window ending, with nothing else happening", () =>
    Effect.gen(function*() {
      yield* at("2026-03-10T12:00:00Z")
      const budget = yield* Budget.make({ tokenCap: 100, window: "1 hour" })
      yield* budget.record({ tokens: 100 })
      const waiter = yield* Effect.forkChild(
        Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 60 }, { onExceeded: "wait" }), (r) => r.commit()))
      )
      yield* settle
      yield* TestClock.adjust("59 minutes")
      yield* settle
      assert.isUndefined(waiter.pollUnsafe())
      yield* TestClock.adjust("1 minute")
      const settlement = yield* Fiber.join(waiter)
      assert.strictEqual(settlement.tokens, 60)
      assert.strictEqual((yield* budget.snapshot).tokensUsed, 60)
    }))

  it.effect("a child's window is its own: the parent keeps counting", () =>
    Effect.gen(function*() {
      yield* at("2026-03-10T12:00:00Z")
      const org = yield* Budget.make({ name: "org", tokenCap: 1000 })
      const agent = yield* org.child("agent", { tokenCap: 100, window: "1 hour" })
      yield* agent.record({ tokens: 100 })
      yield* TestClock.adjust("1 hour")
      yield* agent.record({ tokens: 100 })
      assert.strictEqual((yield* agent.snapshot).tokensUsed, 100)
      assert.strictEqual((yield* org.snapshot).tokensUsed, 200)
      assert.isUndefined((yield* org.snapshot).windowEndsAt)
    }))

  it.effect("a bad window fails with InvalidUsage", () =>
    Effect.gen(function*() {
      for (const window of ["0 seconds", "-1 hour", "soon"] as const) {
        const error = yield* Effect.flip(Budget.make({ window: window as never }))
        assert.strictEqual(error._tag, "InvalidUsage")
        assert.include(error.message, "Invalid window")
      }
    }))
})
