/**
 * Rates and concurrency on Redis, on Redis's clock: the same rules as in
 * memory (test/rates.test.ts), across processes (two connections and
 * stores here), with holds of a process that stopped renewing given back,
 * their places in flight and their tokens too.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer } from "effect"
import * as Redis from "effect/persistence/Redis"
import { Context } from "effect"
import type { BudgetExceeded, BudgetOptions } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { available, RedisLive, settleRedis, testPrefix } from "./support/redis.ts"
import { capturingLogs } from "./support/logs.ts"
import { worker } from "./support/worker.ts"

const refusal = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.flip(effect), (error) => error as unknown as BudgetExceeded)

/** Two processes' budgets of one name on one Redis: two connections, two stores. */
const twoProcesses = (options: BudgetOptions, store: Omit<RedisBudget.StoreOptions, "prefix"> = {}) =>
  Effect.gen(function*() {
    const prefix = testPrefix("rates")
    const open = Effect.flatMap(Layer.build(RedisLive), (redis) =>
      RedisBudget.make(options, { ...store, prefix }).pipe(Effect.provide(redis), Effect.orDie))
    const first = yield* open
    const second = yield* open
    const redis = Context.get(yield* Layer.build(RedisLive), Redis.Redis)
    return { first, second, redis, tree: `${prefix}{${options.name}}` }
  })

describe.runIf(available)("rates and concurrency on Redis", () => {
  it.live("4 processes waiting on one rate: no interval admits more than the bucket allows, and the rate is used", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("fleet")
      // 2,000 tokens a second, a bucket of 2,000; each process 25 fibers x 8 waiting reserves of 1-50 tokens.
      const rate = 2_000
      const workers = Array.from({ length: 4 }, () => worker(["rated", prefix, "fleet", "25", "8", "30 seconds", String(rate)]))
      yield* Effect.addFinalizer(() => Effect.sync(() => workers.forEach((w) => w.child.kill("SIGKILL"))))
      const lines = yield* Effect.promise(() => Promise.all(workers.map((w) => w.firstLine)))
      const admissions = lines.flatMap((line) => JSON.parse(line) as Array<[number, number]>).sort((a, b) => a[0] - b[0])
      assert.strictEqual(admissions.length, 800)
      // Each time was read just after its admission, a round trip late at
      // most: a window may look this much shorter than it was.
      const late = 150
      for (let i = 0; i < admissions.length; i++) {
        let admitted = 0
        for (let j = i; j < admissions.length; j++) {
          admitted += admissions[j]![1]
          const allowed = rate + rate * (admissions[j]![0] - admissions[i]![0] + late) / 1_000
          assert.isAtMost(admitted, allowed, `admissions ${i}..${j} past the bucket`)
        }
      }
      const total = admissions.reduce((sum, [, tokens]) => sum + tokens, 0)
      const elapsed = admissions.at(-1)![0] - admissions[0]![0]
      const possible = rate + rate * elapsed / 1_000
      assert.isAtLeast(total / possible, 0.9, `used ${total} of the ${Math.round(possible)} the rate allowed`)
    }), 120_000)

  it.live("a rate across processes: a period's worth admitted, then a refusal that says which limit and when", () =>
    Effect.gen(function*() {
      const { first, second } = yield* twoProcesses({ name: "tpm", rate: { tokens: 1_000, per: "1 minute" } })
      yield* first.record({ tokens: 600 })
      yield* second.record({ tokens: 400 })
      const refused = yield* refusal(first.record({ tokens: 10 }))
      assert.deepStrictEqual([refused.limit, refused.axis, refused.requested, refused.cap], ["rate", "tokens", 10, 1_000])
      const wait = Duration.toMillis(refused.retryAfter!)
      assert.isTrue(wait > 0 && wait <= 600, `10 tokens at 1,000 a minute: at most 600 ms, got ${wait}`)
      const snap = yield* second.snapshot
      assert.strictEqual(snap.rates[0]!.axis, "tokens")
      assert.isBelow(snap.rates[0]!.available, 10)
    }))

  it.live("maxConcurrent across processes; a hold settled or lapsed frees its place", () =>
    Effect.gen(function*() {
      const { first, redis, second, tree } = yield* twoProcesses({ name: "two", maxConcurrent: 2 })
      const held = yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* first.reserve({ tokens: 1 })
        yield* second.reserve({ tokens: 1 })
        const refused = yield* refusal(first.reserve({ tokens: 1 }))
        assert.deepStrictEqual([refused.limit, refused.axis, refused.cap], ["concurrency", "requests", 2])
        yield* a.commit()
        yield* second.reserve({ tokens: 1 })
        return (yield* first.snapshot).inFlight
      }))
      assert.strictEqual(held, 2)
      assert.strictEqual((yield* first.snapshot).inFlight, 0, "every scope closed")
      // a hold whose process stopped renewing it: its lease runs out, and its place comes back
      const lapsing = yield* Effect.forkChild(Effect.scoped(Effect.andThen(first.reserve({ tokens: 1 }), Effect.never)))
      yield* settleRedis
      yield* Effect.scoped(first.reserve({ tokens: 1 }))
      const [id] = yield* redis.send<Array<string>>("ZRANGE", `${tree}:leases`, "0", "0")
      yield* redis.send("ZADD", `${tree}:leases`, "0", id!)
      yield* Effect.scoped(Effect.andThen(second.reserve({ tokens: 1 }), second.reserve({ tokens: 1 })))
      yield* Fiber.interrupt(lapsing)
    }))

  it.live("a waiter moved up into the line of a level held back by its rate is told when to look again", () =>
    Effect.gen(function*() {
      // the root: 100 tokens every 2 seconds; its child c: a cap of 120
      const { first, second } = yield* twoProcesses({ name: "moved", rate: { tokens: 100, per: "2 seconds" } })
      const c1 = yield* first.child("c", { tokenCap: 120 })
      const c2 = yield* second.child("c", { tokenCap: 120 })
      const firstDone = yield* Deferred.make<void>()
      yield* Effect.scoped(Effect.gen(function*() {
        const a = yield* c1.reserve({ tokens: 60 })
        const w1 = yield* Effect.forkChild(Effect.scoped(Effect.flatMap(
          c1.reserve({ tokens: 80 }, { onExceeded: "wait" }),
          (hold) => Effect.andThen(Deferred.await(firstDone), hold.commit())
        )))
        yield* settleRedis
        const w2 = yield* Effect.forkChild(Effect.scoped(Effect.flatMap(
          c2.reserve({ tokens: 30 }, { onExceeded: "wait" }),
          (hold) => hold.commit()
        )))
        yield* settleRedis
        // W1 takes its 80 at c; W2 moves up to the root's line, whose bucket
        // holds about 20: it gets in once 30 have come back, while W1 still
        // holds (a lease is 30 seconds: not by a late look).
        yield* a.release
        yield* Fiber.join(w2).pipe(Effect.timeout("10 seconds"))
        yield* Deferred.succeed(firstDone, undefined)
        yield* Fiber.join(w1)
      }))
    }), 30_000)

  it.live("a budget made again after a loss: holds from before give back no place and no tokens", () =>
    capturingLogs(() => Effect.gen(function*() {
      const options: BudgetOptions = { name: "life", maxConcurrent: 1, rate: { tokens: 100, per: "1 hour" } }
      const { first, redis, tree } = yield* twoProcesses(options, { onStateLost: "recreate" })
      yield* Effect.scoped(Effect.gen(function*() {
        const before = yield* first.reserve({ tokens: 60 })
        yield* redis.send("DEL", `${tree}:n:life`)
        yield* first.reserve({ tokens: 60 })
        yield* before.release
        const snap = yield* first.snapshot
        assert.strictEqual(snap.inFlight, 1)
        assert.isBelow(snap.rates[0]!.available, 41)
      }))
    })))

  it.live("an interrupted rate waiter leaves nothing held and nothing in line; the next is let in", () =>
    Effect.gen(function*() {
      const { first, redis, second, tree } = yield* twoProcesses({ name: "gone", rate: { tokens: 100, per: "1 second" } })
      yield* first.record({ tokens: 100 })
      const gone = yield* Effect.forkChild(Effect.scoped(first.reserve({ tokens: 100 }, { onExceeded: "wait" })))
      yield* settleRedis
      const next = yield* Effect.forkChild(Effect.scoped(second.reserve({ tokens: 10 }, { onExceeded: "wait" })))
      yield* settleRedis
      yield* Fiber.interrupt(gone).pipe(Effect.timeout("1 second"))
      yield* Fiber.join(next).pipe(Effect.timeout("5 seconds"))
      assert.strictEqual(yield* redis.send<number>("ZCARD", `${tree}:tickets`), 0, "nothing in line")
      assert.strictEqual((yield* first.snapshot).tokensReserved, 0, "nothing held")
    }))

  it.live("a waiter held back by a rate is let in once the bucket has refilled, in order", () =>
    Effect.gen(function*() {
      const { first, second } = yield* twoProcesses({ name: "wait", rate: { tokens: 100, per: "300 millis" } })
      yield* first.record({ tokens: 100 })
      const order: Array<string> = []
      const waiting = (budget: typeof first, name: string, tokens: number) =>
        Effect.forkChild(Effect.scoped(Effect.flatMap(
          budget.reserve({ tokens }, { onExceeded: "wait" }),
          (hold) => Effect.andThen(Effect.sync(() => order.push(name)), hold.commit())
        )))
      const a = yield* waiting(first, "first", 60)
      yield* settleRedis
      const b = yield* waiting(second, "second", 30)
      yield* Fiber.join(a).pipe(Effect.timeout("5 seconds"))
      yield* Fiber.join(b).pipe(Effect.timeout("5 seconds"))
      assert.deepStrictEqual(order, ["first", "second"])
    }))
})
