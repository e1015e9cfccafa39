/**
 * Redis going away and coming back: operations fail with BudgetUnavailable
 * while it is gone, and the books are exact after it returns. The test runs
 * a Redis of its own (support/ownRedis.ts: a free port, an append-only
 * file), so it can kill it without disturbing the others.
 */
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Schedule } from "effect"
import { usdToNanos } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { capturingLogs, outageLines } from "./support/logs.ts"
import { ownRedis } from "./support/ownRedis.ts"
import { eventually } from "./support/poll.ts"
import { available } from "./support/redis.ts"

describe.runIf(available)("Redis going away", () => {
  // The driver's warnings while its server is down are this test's to
  // read, not the run's to print.
  it.live("fails with BudgetUnavailable while Redis is gone, and keeps exact books across its return", () =>
    capturingLogs((lines) => Effect.gen(function*() {
      const server = yield* ownRedis({ appendOnly: true })
      const redis = yield* Layer.build(Layer.orDie(NodeRedis.layer({ url: server.url })))
      const budget = yield* RedisBudget.make({ name: "outage", tokenCap: 1_000_000, usdCap: 100 }, { leaseTtl: "1 second", timeout: "2 seconds" }).pipe(Effect.provide(redis))

      // Calls that reserve, then commit until the commit is acknowledged:
      // a commit whose reply was lost is retried, and charges once.
      const charged = { tokens: 0, nanos: 0, unavailable: 0 }
      const call = Effect.scoped(Effect.gen(function*() {
        const hold = yield* budget.reserve({ tokens: 20, usd: 0.002 })
        yield* Effect.sleep("2 millis")
        // Counted in the same uninterruptible stretch as the commit: stopping
        // the load must not charge a commit the count never sees.
        yield* Effect.uninterruptible(hold.commit({ tokens: 15, usd: 0.0015 }).pipe(
          Effect.tapError(() => Effect.sync(() => charged.unavailable++)),
          Effect.retry(Schedule.spaced("50 millis")),
          Effect.map((settlement) => {
            charged.tokens += settlement.tokens
            charged.nanos += usdToNanos(settlement.usd)
          })
        ))
      })).pipe(
        Effect.catchTag("BudgetUnavailable", () => Effect.sync(() => charged.unavailable++)),
        Effect.andThen(Effect.sleep("5 millis"))
      )
      const load = yield* Effect.forkChild(
        Effect.forEach(Array.from({ length: 8 }), () => Effect.forever(call), { concurrency: "unbounded" })
      )
      yield* eventually("calls charged before the outage", Effect.sync(() => charged.tokens > 0))
      yield* server.kill
      const down = yield* Effect.flip(budget.snapshot)
      assert.strictEqual(down._tag, "BudgetUnavailable")
      assert.include(down.message, `Budget "outage" is unavailable`)
      assert.match(down.message, /unavailable: [^.\s]/, "the message names the cause")
      yield* eventually("calls met the outage", Effect.sync(() => charged.unavailable > 0))
      yield* server.restart
      const before = charged.tokens
      yield* eventually("calls charged after Redis came back", Effect.sync(() => charged.tokens > before))
      yield* Fiber.interrupt(load)
      // holds whose replies were lost expire with their 1-second leases
      yield* eventually(
        "nothing held",
        Effect.map(budget.snapshot, (snap) => snap.tokensReserved === 0 && snap.usdReserved === 0),
        { every: "50 millis" }
      )
      const snap = yield* budget.snapshot
      assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved], [0, 0])
      assert.strictEqual(snap.tokensUsed, charged.tokens)
      assert.strictEqual(usdToNanos(snap.usdUsed), charged.nanos)
      assert.isTrue(lines.some((line) => line.level === "Warn" && line.text.includes("NodeRedis")), "the driver saw the outage")
      assert.deepStrictEqual(outageLines(lines), ["Warn start", "Info end"], "the store said it once, and its end")
    })), 60_000)
})

describe.runIf(available)("an outage, as it is said", () => {
  it.live("with the driver's offline queue off, a refused connection fails at once; the store says the outage once, and its end once", () =>
    capturingLogs((lines) => Effect.gen(function*() {
      const server = yield* ownRedis({ appendOnly: true })
      const redis = yield* Layer.build(Layer.orDie(NodeRedis.layer({ url: server.url, disableOfflineQueue: true })))
      // A timeout no test waits out: a call that waited for it would fail the test.
      const budget = yield* RedisBudget.make({ name: "down", tokenCap: 1_000 }, { timeout: "60 seconds" }).pipe(
        Effect.provide(redis)
      )
      yield* budget.record({ tokens: 1 })
      yield* server.kill
      const refused = yield* Effect.forEach(Array.from({ length: 20 }), () => Effect.flip(budget.record({ tokens: 1 })))
      assert.isTrue(refused.every((e) => e._tag === "BudgetUnavailable"))
      assert.match(refused[0]!.message, /unavailable: [^.\s]/, "the message names the cause")
      yield* server.restart
      yield* budget.record({ tokens: 1 }).pipe(
        Effect.retry({ while: (e) => e._tag === "BudgetUnavailable", schedule: Schedule.spaced("50 millis") })
      )
      assert.deepStrictEqual(outageLines(lines), ["Warn start", "Info end"])
      assert.strictEqual((yield* budget.snapshot).tokensUsed, 2)
    })), 20_000)
})
