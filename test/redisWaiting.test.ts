/**
 * Waiting on a Redis budget from several processes: one line, first come
 * first served across all of them, woken through pub/sub; a waiter whose
 * process dies leaves the line within its lease.
 *
 * Each `process` here is a budget opened on its own client, with its own
 * subscription and its own waiters, as another process would have; the
 * last test kills a real one.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer } from "effect"
import type { Duration } from "effect"
import * as Redis from "effect/persistence/Redis"
import { spawn } from "node:child_process"
import { Budget } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { available, RedisLive, testPrefix } from "./support/redis.ts"

/** Opens the budget `shared` under `prefix` as one more process would. */
const process_ = (prefix: string, leaseTtl: Duration.Input = "30 seconds") =>
  Effect.gen(function*() {
    const redis = yield* Layer.build(RedisLive)
    return yield* RedisBudget.make({ name: "shared", tokenCap: 100 }, { prefix, leaseTtl }).pipe(Effect.provide(redis))
  })

/** How many requests wait in the line of the budget `shared`. */
const waiting = (prefix: string) =>
  Effect.gen(function*() {
    const redis = yield* Effect.map(Layer.build(RedisLive), Context.get(Redis.Redis))
    return Number(yield* redis.send<string>("ZCARD", `${prefix}{shared}:q:shared`))
  })

const until = <E, R>(check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 500; i++) {
      if (yield* check) return
      yield* Effect.sleep("10 millis")
    }
    assert.fail("the condition never held")
  })

describe.runIf(available)("waiting across processes", () => {
  it.live("first come, first served: a small request that fits waits behind a larger one from another process", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("wait")
      const [a, b, c] = [yield* process_(prefix), yield* process_(prefix), yield* process_(prefix)]
      const order: Array<string> = []
      const [h1, h2] = [yield* Effect.forkChild(holdUntil(a, 50)), yield* Effect.forkChild(holdUntil(a, 50))]
      yield* until(Effect.map(a.snapshot, (s) => s.tokensReserved === 100))
      const large = yield* Effect.forkChild(grant(b, 60, "large", order))
      yield* until(Effect.map(waiting(prefix), (n) => n === 1))
      const small = yield* Effect.forkChild(grant(c, 10, "small", order))
      yield* until(Effect.map(waiting(prefix), (n) => n === 2))

      // 50 free: the small requests would fit, but the large one came first,
      // and one arriving now lines up behind them.
      yield* Fiber.interrupt(h1)
      const late = yield* Effect.forkChild(grant(a, 10, "late", order))
      yield* until(Effect.map(waiting(prefix), (n) => n === 3))
      yield* Effect.sleep("200 millis")
      assert.deepStrictEqual(order, [])

      yield* Fiber.interrupt(h2)
      yield* Fiber.joinAll([large, small, late])
      assert.deepStrictEqual(order, ["large", "small", "late"])
      assert.strictEqual(yield* waiting(prefix), 0)
      const snap = yield* a.snapshot
      assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [80, 0])
    }))

  it.live("a waiter that gives up passes its turn to the next, in another process", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("wait")
      const [a, b, c] = [yield* process_(prefix), yield* process_(prefix), yield* process_(prefix)]
      const holder = yield* Effect.forkChild(holdUntil(a, 95))
      yield* until(Effect.map(a.snapshot, (s) => s.tokensReserved === 95))
      const order: Array<string> = []
      const large = yield* Effect.forkChild(grant(b, 60, "large", order))
      yield* until(Effect.map(waiting(prefix), (n) => n === 1))
      const small = yield* Effect.forkChild(grant(c, 5, "small", order))
      yield* until(Effect.map(waiting(prefix), (n) => n === 2))
      // 5 free fits the small one, which waits only because the large one is first.
      yield* Effect.sleep("100 millis")
      assert.deepStrictEqual(order, [])
      yield* Fiber.interrupt(large)
      yield* Fiber.join(small)
      assert.deepStrictEqual(order, ["small"])
      assert.strictEqual(yield* waiting(prefix), 0)
      yield* Fiber.interrupt(holder)
    }))

  it.live("a process killed while first in line leaves it within its lease", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("wait")
      const a = yield* process_(prefix)
      const holder = yield* Effect.forkChild(holdUntil(a, 100))
      yield* until(Effect.map(a.snapshot, (s) => s.tokensReserved === 100))
      // The worker waits for 60 tokens on a 1 s lease, first in line.
      const child = spawn(process.execPath, ["--import", "tsx", "test/support/redisWorker.ts", "wait", prefix, "shared", "1", "60", "1 second", "100"], {
        stdio: ["ignore", "ignore", "inherit"]
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
      yield* until(Effect.map(waiting(prefix), (n) => n === 1))
      const order: Array<string> = []
      const mine = yield* Effect.forkChild(grant(a, 10, "mine", order))
      yield* until(Effect.map(waiting(prefix), (n) => n === 2))
      child.kill("SIGKILL")
      yield* Fiber.interrupt(holder)
      // Room for both now, but the dead process is first until its lease runs out.
      yield* Fiber.join(mine)
      assert.deepStrictEqual(order, ["mine"])
      assert.strictEqual(yield* waiting(prefix), 0)
    }))
})

/** Holds `tokens` until interrupted. */
const holdUntil = (budget: Budget["Service"], tokens: number) =>
  Effect.scoped(Effect.andThen(budget.reserve({ tokens }), Effect.never))

/** Waits for `tokens`, notes `name` when granted, and commits them. */
const grant = (budget: Budget["Service"], tokens: number, name: string, order: Array<string>) =>
  Effect.scoped(Effect.gen(function*() {
    const hold = yield* budget.reserve({ tokens }, { onExceeded: "wait" })
    order.push(name)
    yield* hold.commit()
  }))
