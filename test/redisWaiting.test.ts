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
import { counting } from "./support/inFlight.ts"
import { eventually } from "./support/poll.ts"
import { available, RedisLive, settleRedis, testPrefix } from "./support/redis.ts"

/**
 * Opens the budget `shared` under `prefix` as one more process would; its
 * commands are counted while in flight, for `settleRedis`.
 */
const process_ = (prefix: string, leaseTtl: Duration.Input = "30 seconds") =>
  Effect.gen(function*() {
    const redis = Context.get(yield* Layer.build(RedisLive), Redis.Redis)
    return yield* RedisBudget.make({ name: "shared", tokenCap: 100 }, { prefix, leaseTtl }).pipe(
      Effect.provideService(Redis.Redis, counting(redis))
    )
  })

/** The line of the budget `shared` under `prefix`, read on a connection of its own. */
const lineOf = (prefix: string) =>
  Effect.gen(function*() {
    const redis = Context.get(yield* Layer.build(RedisLive), Redis.Redis)
    const length = Effect.map(redis.send<string>("ZCARD", `${prefix}{shared}:q:shared`), Number)
    return {
      length,
      /** Polls until `n` requests wait in it. */
      reaches: (n: number) => eventually(`${n} waiting in line`, Effect.map(length, (l) => l === n))
    }
  })

/** Polls until `budget` holds `tokens`. */
const holding = (budget: Budget["Service"], tokens: number) =>
  eventually(`${tokens} tokens held`, Effect.map(budget.snapshot, (s) => s.tokensReserved === tokens))

describe.runIf(available)("waiting across processes", () => {
  it.live("first come, first served: a small request that fits waits behind a larger one from another process", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("wait")
      const line = yield* lineOf(prefix)
      const [a, b, c] = [yield* process_(prefix), yield* process_(prefix), yield* process_(prefix)]
      const order: Array<string> = []
      const [h1, h2] = [yield* Effect.forkChild(holdUntil(a, 50)), yield* Effect.forkChild(holdUntil(a, 50))]
      yield* holding(a, 100)
      const large = yield* Effect.forkChild(grant(b, 60, "large", order))
      yield* line.reaches(1)
      const small = yield* Effect.forkChild(grant(c, 10, "small", order))
      yield* line.reaches(2)

      // 50 free: the small requests would fit, but the large one came first,
      // and one arriving now lines up behind them.
      yield* Fiber.interrupt(h1)
      const late = yield* Effect.forkChild(grant(a, 10, "late", order))
      yield* line.reaches(3)
      // Once every round trip and wake-up has landed, none was let in.
      yield* settleRedis
      assert.deepStrictEqual(order, [])

      yield* Fiber.interrupt(h2)
      yield* Fiber.joinAll([large, small, late])
      assert.deepStrictEqual(order, ["large", "small", "late"])
      assert.strictEqual(yield* line.length, 0)
      const snap = yield* a.snapshot
      assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [80, 0])
    }))

  it.live("a waiter that gives up passes its turn to the next, in another process", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("wait")
      const line = yield* lineOf(prefix)
      const [a, b, c] = [yield* process_(prefix), yield* process_(prefix), yield* process_(prefix)]
      const holder = yield* Effect.forkChild(holdUntil(a, 95))
      yield* holding(a, 95)
      const order: Array<string> = []
      const large = yield* Effect.forkChild(grant(b, 60, "large", order))
      yield* line.reaches(1)
      const small = yield* Effect.forkChild(grant(c, 5, "small", order))
      yield* line.reaches(2)
      // 5 free fits the small one, which waits only because the large one is
      // first: once every round trip and wake-up has landed, it still waits.
      yield* settleRedis
      assert.deepStrictEqual(order, [])
      yield* Fiber.interrupt(large)
      yield* Fiber.join(small)
      assert.deepStrictEqual(order, ["small"])
      assert.strictEqual(yield* line.length, 0)
      yield* Fiber.interrupt(holder)
    }))

  it.live("a process killed while first in line leaves it within its lease", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("wait")
      const line = yield* lineOf(prefix)
      const a = yield* process_(prefix)
      const holder = yield* Effect.forkChild(holdUntil(a, 100))
      yield* holding(a, 100)
      // The worker waits for 60 tokens on a 1 s lease, first in line.
      const child = spawn(process.execPath, ["--import", "tsx", "test/support/redisWorker.ts", "wait", prefix, "shared", "1", "60", "1 second", "100"], {
        stdio: ["ignore", "ignore", "inherit"]
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
      yield* line.reaches(1)
      const order: Array<string> = []
      const mine = yield* Effect.forkChild(grant(a, 10, "mine", order))
      yield* line.reaches(2)
      child.kill("SIGKILL")
      yield* Fiber.interrupt(holder)
      // Room for both now, but the dead process is first until its lease runs out.
      yield* Fiber.join(mine)
      assert.deepStrictEqual(order, ["mine"])
      assert.strictEqual(yield* line.length, 0)
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
