/**
 * Charged once however late: replies lost to a Redis that stalls
 * (`CLIENT PAUSE`) or drops the connection (`CLIENT KILL`), and the retries
 * that follow them, on a Redis of the test's own. What the store says of
 * the outages is kept (support/logs.ts), not printed.
 */
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Schedule } from "effect"
import * as Redis from "effect/persistence/Redis"
import type { BudgetOptions } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import type { RedisStoreOptions } from "../src/redis.ts"
import { capturingLogs, outageLines } from "./support/logs.ts"
import { ownRedis } from "./support/ownRedis.ts"
import { eventually } from "./support/poll.ts"
import { available } from "./support/redis.ts"

const setUp = (options: BudgetOptions, store: RedisStoreOptions) =>
  Effect.gen(function*() {
    const server = yield* ownRedis()
    const client = yield* Layer.build(Layer.orDie(NodeRedis.layer({ url: server.url })))
    const redis = Context.get(client, Redis.Redis)
    const budget = yield* RedisBudget.make(options, store).pipe(Effect.provide(client), Effect.orDie)
    // Another connection stalls the server: writes wait until the pause ends.
    const pauser = Context.get(yield* Layer.build(Layer.orDie(NodeRedis.layer({ url: server.url }))), Redis.Redis)
    const pause = (millis: number) => pauser.send("CLIENT", "PAUSE", String(millis), "WRITE")
    // Drops every other client's connection, replies in flight lost with it.
    const drop = pauser.send("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
    // Reads on a connection of its own, which a pause does not hold up.
    const probe = Context.get(yield* Layer.build(Layer.orDie(NodeRedis.layer({ url: server.url }))), Redis.Redis)
    return { budget, redis, pause, drop, probe }
  })

const unavailable = (e: { readonly _tag: string }) => e._tag === "BudgetUnavailable"

describe.runIf(available)("retries after lost replies charge once", () => {
  it.live("a commit retried after its settlement's keep time, while its process lives, charges once", () =>
    capturingLogs(() => Effect.gen(function*() {
      const { budget, pause, redis } = yield* setUp({ name: "late", tokenCap: 1_000 }, {
        leaseTtl: "300 millis",
        timeout: "200 millis"
      })
      yield* Effect.scoped(Effect.gen(function*() {
        const hold = yield* budget.reserve({ tokens: 50 })
        yield* pause(500)
        const lost = yield* Effect.flip(hold.commit({ tokens: 25 }))
        assert.strictEqual(lost._tag, "BudgetUnavailable", "no reply within the timeout")
        // The commit ran when the pause ended; its reply was lost.
        const key = yield* eventually(
          "the commit ran",
          Effect.map(redis.send<Array<string>>("KEYS", "*:h:*"), (keys) => keys.length === 1)
        ).pipe(Effect.andThen(Effect.map(redis.send<Array<string>>("KEYS", "*:h:*"), (keys) => keys[0]!)))
        assert.match(yield* redis.send<string>("GET", key), /^c 25 /)
        // As if the keep time were almost over: the process keeps it while the hold is unanswered.
        yield* redis.send("PEXPIRE", key, "400")
        yield* eventually("the process renewed the settlement", Effect.map(redis.send<number>("PTTL", key), (ttl) => ttl > 10_000))
        yield* Effect.sleep("500 millis")
        const settled = yield* hold.commit({ tokens: 25 })
        assert.strictEqual(settled.tokens, 25)
      }))
      const snap = yield* budget.snapshot
      assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [25, 0])
    })), 30_000)

  it.live("records refused while Redis stalled, retried with their ids, charge once", () =>
    capturingLogs((lines) => Effect.gen(function*() {
      const { budget, pause } = yield* setUp({ name: "stall", tokenCap: 10_000 }, { timeout: "200 millis" })
      yield* pause(500)
      const ids = Array.from({ length: 10 }, (_, i) => `request-${i}`)
      const failed = yield* Effect.forEach(ids, (id) => Effect.flip(budget.record({ tokens: 10 }, { id })), {
        concurrency: "unbounded"
      })
      assert.isTrue(failed.every(unavailable), "each got no reply in time")
      // Every one ran when the pause ended; the caller retries each, as it must.
      yield* Effect.forEach(ids, (id) =>
        budget.record({ tokens: 10 }, { id }).pipe(
          Effect.retry({ while: unavailable, schedule: Schedule.spaced("50 millis") })
        ), { concurrency: "unbounded" })
      assert.strictEqual((yield* budget.snapshot).tokensUsed, 100)
      assert.deepStrictEqual(outageLines(lines), ["Warn start", "Info end"], "the stall said once, and its end once")
    })), 30_000)

  it.live("a reserve retried with its id after a lost reply gets the hold it made", () =>
    capturingLogs(() => Effect.gen(function*() {
      const { budget, pause } = yield* setUp({ name: "hold", tokenCap: 1_000 }, { timeout: "200 millis" })
      yield* pause(500)
      const lost = yield* Effect.flip(Effect.scoped(budget.reserve({ tokens: 50 }, { id: "job-1" })))
      assert.strictEqual(lost._tag, "BudgetUnavailable")
      const settled = yield* Effect.scoped(Effect.gen(function*() {
        const hold = yield* budget.reserve({ tokens: 50 }, { id: "job-1" }).pipe(
          Effect.retry({ while: unavailable, schedule: Schedule.spaced("50 millis") })
        )
        assert.strictEqual((yield* budget.snapshot).tokensReserved, 50, "one hold, not two")
        return yield* hold.commit({ tokens: 30 })
      }))
      assert.strictEqual(settled.tokens, 30)
      const snap = yield* budget.snapshot
      assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [30, 0])
    })), 30_000)

  it.live("a dropped connection: the store sends settlements, reserves and keyed records again within its timeout, each charged once", () =>
    capturingLogs(() => Effect.gen(function*() {
      const { budget, drop } = yield* setUp({ name: "drop", tokenCap: 1_000_000_000 }, { timeout: "5 seconds" })
      const charged = { tokens: 0, done: 0 }
      const cycle = Effect.scoped(Effect.gen(function*() {
        const hold = yield* budget.reserve({ tokens: 10 })
        yield* Effect.sleep("1 millis")
        const settled = yield* hold.commit({ tokens: 7 })
        charged.tokens += settled.tokens
      }))
      const record = (i: number) =>
        Effect.tap(budget.record({ tokens: 3 }, { id: `r${i}` }), () => Effect.sync(() => charged.tokens += 3))
      const load = yield* Effect.forkChild(Effect.forEach(
        Array.from({ length: 3_000 }, (_, i) => i),
        (i) => Effect.tap(i % 2 === 0 ? cycle : record(i), () => Effect.sync(() => charged.done++)),
        { concurrency: 200, discard: true }
      ), { startImmediately: true })
      yield* eventually("the load is under way", Effect.sync(() => charged.done > 300 || load.pollUnsafe() !== undefined))
      assert.isUndefined(load.pollUnsafe(), "still running")
      yield* drop
      yield* Fiber.join(load)
      const snap = yield* budget.snapshot
      assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [charged.tokens, 0])
      assert.strictEqual(charged.tokens, 1_500 * 7 + 1_500 * 3)
    })), 60_000)

  it.live("a waiter whose first attempt ran late leaves no ticket in line: the next is served as soon as room appears", () =>
    capturingLogs(() => Effect.gen(function*() {
      const { budget, pause, probe } = yield* setUp({ name: "line", tokenCap: 100 }, { timeout: "200 millis" })
      const blocker = yield* budget.reserve({ tokens: 100 })
      yield* pause(600)
      const stallEnded = yield* Effect.forkChild(probe.send("SET", "stall-ended", "1"), { startImmediately: true })
      const unanswered = yield* Effect.flip(Effect.scoped(budget.reserve({ tokens: 10 }, { onExceeded: "wait" })))
      assert.strictEqual(unanswered._tag, "BudgetUnavailable", "its first attempt had no reply in time")
      // When the pause ends, its attempt runs, and so does its leave.
      yield* Fiber.join(stallEnded)
      yield* eventually(
        "the line is empty",
        Effect.map(probe.send<string | null>("HGET", "budget:{line}:n:line", "wq"), (waiting) => waiting === "0" || waiting === null)
      )
      const next = yield* Effect.forkChild(
        Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 10 }, { onExceeded: "wait" }), (r) => r.commit()))
      )
      yield* blocker.release
      // far sooner than the 30-second lease an orphan ticket would hold the line for
      const settled = yield* Fiber.join(next).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(settled.tokens, 10)
    })), 30_000)

  it.live("Effect.timeout ends a waiting reserve while its round trip is stalled, and it leaves nothing held or in line", () =>
    capturingLogs(() => Effect.gen(function*() {
      const { budget, pause, probe } = yield* setUp({ name: "prompt", tokenCap: 100 }, { timeout: "5 seconds" })
      yield* budget.reserve({ tokens: 95 })
      yield* pause(1_000)
      // A write sent after the pause began: it lands when the pause ends.
      const marker = yield* Effect.forkChild(probe.send("SET", "stall-ended", "1"), { startImmediately: true })
      const gaveUp = yield* Effect.exit(Effect.scoped(budget.reserve({ tokens: 10 }, { onExceeded: "wait" })).pipe(
        Effect.timeout("50 millis")
      ))
      assert.isTrue(gaveUp._tag === "Failure")
      assert.isUndefined(marker.pollUnsafe(), "it gave up while Redis was still stalled")
      yield* Fiber.join(marker)
      yield* eventually(
        "the line is empty",
        Effect.map(probe.send<string | null>("HGET", "budget:{prompt}:n:prompt", "wq"), (w) => w === "0" || w === null)
      )
      const snap = yield* budget.snapshot
      assert.deepStrictEqual([snap.tokensReserved, snap.tokensUsed], [95, 0])
    })), 30_000)

  it.live("calls sharing a hold through one id: one of them ending does not stop the renewal of the other's", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { budget, probe } = yield* setUp({ name: "shared", tokenCap: 100 }, { leaseTtl: "600 millis" })
        yield* budget.reserve({ tokens: 75 })
        // waits: 75 + 30 is past the cap
        const waiter = yield* Effect.forkChild(
          Effect.scoped(budget.reserve({ tokens: 30 }, { id: "x", onExceeded: "wait" })),
          { startImmediately: true }
        )
        yield* eventually(
          "it waits in line",
          Effect.map(probe.send<string | null>("HGET", "budget:{shared}:n:shared", "wq"), (waiting) => waiting === "1")
        )
        assert.isUndefined(waiter.pollUnsafe())
        yield* Effect.scoped(Effect.gen(function*() {
          // fits (75 + 10), under the same id
          const held = yield* budget.reserve({ tokens: 10 }, { id: "x" })
          yield* Fiber.interrupt(waiter)
          // leases of 600 ms run out three times over: only renewal keeps it
          yield* Effect.sleep("2 seconds")
          assert.strictEqual((yield* budget.snapshot).tokensReserved, 85, "still held while its scope is open")
          yield* held.commit()
        }))
        assert.strictEqual((yield* budget.snapshot).tokensUsed, 10)
      })
    ), 30_000)
})
