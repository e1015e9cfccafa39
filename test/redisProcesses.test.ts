/**
 * One budget in Redis, shared by several Node processes: no overshoot at
 * any moment, exact totals, and the holds of a killed process returning
 * within their lease.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Schedule, Stream } from "effect"
import type { Duration } from "effect"
import * as Redis from "effect/persistence/Redis"
import type { BudgetEvent } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import * as Batch from "../src/internal/redis/batch.ts"
import { eventually } from "./support/poll.ts"
import { available, RedisLive, runBatch, testPrefix } from "./support/redis.ts"
import { fleetOnSharedBudget, worker } from "./support/worker.ts"

const sharedBudget = (prefix: string, leaseTtl: Duration.Input = "30 seconds") =>
  Effect.gen(function*() {
    const redis = yield* Layer.build(RedisLive)
    return yield* RedisBudget.make({ name: "shared", tokenCap: 200_000, usdCap: 0.2 }, { prefix, leaseTtl }).pipe(
      Effect.provide(redis)
    )
  })

describe.runIf(available)("several processes on one Redis budget", () => {
  it.live("4 processes x 250 fibers: never past a cap, totals exact to the nano-dollar", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("procs")
      const budget = yield* sharedBudget(prefix)
      yield* fleetOnSharedBudget(budget, prefix)
    }), 120_000)

  it.live("a process killed holding leases gives them back within the lease, as released holds, and nothing else changes", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("kill")
      const budget = yield* sharedBudget(prefix, "1 second")
      const released: Array<BudgetEvent> = []
      // In the test's scope: the stream ends before the client it listens through closes.
      yield* Effect.forkScoped(
        Stream.runForEach(Stream.filter(budget.events, (e) => e._tag === "Released"), (e) => Effect.sync(() => released.push(e))),
        { startImmediately: true }
      )
      yield* budget.record({ tokens: 7 })
      const { child, firstLine } = worker(["hold", prefix, "shared", "20", "0", "1 second"])
      yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
      yield* Effect.promise(() => firstLine)
      assert.strictEqual((yield* budget.snapshot).tokensReserved, 200)
      child.kill("SIGKILL")
      // A snapshot gives back the holds whose leases ran out: within the
      // 1-second lease, and a margin for the round trips.
      yield* eventually(
        "the killed process's holds given back",
        Effect.map(budget.snapshot, (snap) => snap.tokensReserved === 0),
        { every: "50 millis", within: "1500 millis" }
      )
      const snap = yield* budget.snapshot
      assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved, snap.tokensUsed], [0, 0, 7])
      yield* eventually("20 Released events", Effect.sync(() => released.length >= 20))
      assert.strictEqual(released.length, 20)
      assert.deepStrictEqual(released[0], { _tag: "Released", budget: "shared", tokens: 10, usd: 0.01 })
    }), 30_000)

  // A script gives back a bounded number of expired holds; a request it
  // would refuse with more left is sent again, so none is refused while
  // expired holds are left. (Before: 64 a script, and a refusal.)
  for (const [holds, first] of [[250, "reserve"], [10_000, "snapshot"], [1_000, "waiting reserve"]] as const) {
    it.live(`a process killed holding ${holds} holds: once their leases ran out, the whole cap is free to a ${first}`, () =>
      Effect.gen(function*() {
        const prefix = testPrefix("reap")
        const caps = { tokenCap: holds * 10, usdCap: holds * 0.01 }
        const redis = yield* Effect.provide(Redis.Redis, yield* Layer.build(RedisLive))
        const budget = yield* RedisBudget.make({ name: "shared", ...caps }, { prefix, leaseTtl: "1 second" }).pipe(
          Effect.provideService(Redis.Redis, redis)
        )
        const { child, firstLine } = worker([
          "hold", prefix, "shared", String(holds), "0", "1 second", String(caps.tokenCap), String(caps.usdCap)
        ])
        yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
        yield* Effect.promise(() => firstLine)
        child.kill("SIGKILL")
        // until every lease has run out, by Redis's clock
        const leases = `${prefix}{shared}:leases`
        yield* Effect.repeat(
          Effect.flatMap(redis.send<[string, string]>("TIME"), ([seconds, micros]) =>
            redis.send<number>("ZCOUNT", leases, "-inf", String(Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)))),
          { until: (expired) => expired === holds, schedule: Schedule.spaced("20 millis") }
        )
        if (first === "snapshot") {
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved, snap.tokensUsed], [0, 0, 0])
        }
        const options = first === "waiting reserve" ? { onExceeded: "wait" as const } : {}
        const whole = yield* Effect.scoped(
          Effect.flatMap(budget.reserve({ tokens: caps.tokenCap, usd: caps.usdCap }, options), (r) => r.commit())
        ).pipe(Effect.timeout("10 seconds"))
        assert.strictEqual(whole.tokens, caps.tokenCap)
        const snap = yield* budget.snapshot
        assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved, snap.tokensUsed], [0, 0, caps.tokenCap])
        assert.strictEqual(yield* redis.send<number>("ZCARD", leases), 0, "every lease given back")
      }), 60_000)
  }

  it.live("a hold renewed by a live process outlives its lease", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("renew")
      const budget = yield* sharedBudget(prefix, "300 millis")
      const settled = yield* Effect.scoped(Effect.gen(function*() {
        const hold = yield* budget.reserve({ tokens: 10 })
        yield* Effect.sleep("1 second")
        assert.strictEqual((yield* budget.snapshot).tokensReserved, 10, "renewed, not reaped")
        return yield* hold.commit({ tokens: 4 })
      }))
      assert.strictEqual(settled.tokensOverage, 0)
      const snap = yield* budget.snapshot
      assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [4, 0])
    }), 30_000)

  it.live("a waiter in one process is woken by a release in another, through pub/sub", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("wake")
      // two clients and two subscriptions: as two processes would have
      const here = yield* sharedBudget(prefix)
      const there = yield* sharedBudget(prefix)
      const hold = yield* here.reserve({ tokens: 200_000 })
      const waiter = yield* Effect.forkChild(
        Effect.scoped(Effect.flatMap(there.reserve({ tokens: 50_000 }, { onExceeded: "wait" }), (r) => r.commit()))
      )
      // Waiting: its ticket is in the budget's line.
      const redis = yield* Effect.provide(Redis.Redis, yield* Layer.build(RedisLive))
      yield* eventually(
        "the waiter is in line",
        Effect.map(redis.send<number>("ZCARD", `${prefix}{shared}:q:shared`), (n) => n === 1)
      )
      assert.isUndefined(waiter.pollUnsafe(), "no room yet")
      yield* hold.release
      // far sooner than the 30-second lease that bounds a missed message
      const settled = yield* Fiber.join(waiter).pipe(Effect.timeout("3 seconds"))
      assert.strictEqual(settled.tokens, 50_000)
    }), 30_000)

  it.live("events reach every process, in order", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("events")
      const listener = yield* sharedBudget(prefix)
      const actor = yield* sharedBudget(prefix)
      const agent = yield* actor.child("agent", { tokenCap: 100 })
      const seen: Array<BudgetEvent> = []
      yield* Effect.forkScoped(Stream.runForEach(listener.events, (e) => Effect.sync(() => seen.push(e))))
      // Listening once its registration is in Redis (it subscribes first).
      const redis = yield* Effect.provide(Redis.Redis, yield* Layer.build(RedisLive))
      yield* eventually(
        "the listener is registered",
        Effect.map(redis.send<number>("EXISTS", `${prefix}{shared}:listeners`), (n) => n === 1)
      )
      yield* agent.record({ tokens: 10, usd: 0.001 })
      yield* Effect.scoped(Effect.flatMap(agent.reserve({ tokens: 20 }), (r) => r.commit({ tokens: 25 })))
      yield* eventually("three events", Effect.sync(() => seen.length >= 3))
      // the whole sequence is in the contract suite; here, that it crosses processes
      assert.deepStrictEqual(seen.map((e) => `${e._tag} ${e.budget}`), [
        "Recorded shared/agent",
        "Reserved shared/agent",
        "Committed shared/agent"
      ])
    }), 30_000)

  it.live("a commit retried after a lost reply charges once", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("retry")
      const budget = yield* sharedBudget(prefix)
      const redis = yield* Effect.provide(Redis.Redis, yield* Layer.build(RedisLive))
      const tree = `${prefix}{shared}`
      const key = `${tree}:n:shared`
      const run = (operation: Batch.Operation) => Effect.map(runBatch(redis, tree, [operation]), (replies) => replies[0])
      const reserved = yield* run({ _tag: "Reserve", chain: [key], id: "retried", tokens: 30, nanos: 0 })
      assert.strictEqual(reserved, "ok")
      // the first reply is lost: the caller cannot tell, and commits again
      const commit: Batch.Operation = { _tag: "Commit", chain: [key], id: "retried", tokens: 25, nanos: 0, estimated: false }
      const first = yield* run(commit)
      const again = yield* run(commit)
      assert.deepStrictEqual(again, first)
      const snap = yield* budget.snapshot
      assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [25, 0])
    }))
})
