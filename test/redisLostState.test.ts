/**
 * A budget whose state Redis lost (a restart without persistence, an
 * eviction, a flush, a failover to a replica that missed writes) fails
 * closed: every operation on it is refused with `BudgetUnavailable`
 * saying so, never let through as if it had no cap, until it is recreated
 * on purpose (`reset`, or `onStateLost: "recreate"`). Each test runs a
 * Redis of its own, which it restarts, flushes and edits.
 */
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Result, Schedule, Stream } from "effect"
import * as Redis from "effect/persistence/Redis"
import type { BudgetOptions } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { series } from "../src/internal/testing/metrics.ts"
import type { RedisStoreOptions } from "../src/redis.ts"
import { capturingLogs } from "./support/logs.ts"
import { ownRedis } from "./support/ownRedis.ts"
import { available } from "./support/redis.ts"

const spent: BudgetOptions = { name: "lost", tokenCap: 100, usdCap: 1 }

/** A Redis of the test's own, a client on it, and a budget of 100 tokens / $1 spent to the cap. */
const setUp = (store: RedisStoreOptions = {}, options: BudgetOptions = spent, appendOnly = false) =>
  Effect.gen(function*() {
    const server = yield* ownRedis({ appendOnly })
    const client = yield* Layer.build(Layer.orDie(NodeRedis.layer({ url: server.url })))
    const redis = Context.get(client, Redis.Redis)
    const budget = yield* RedisBudget.make(options, { timeout: "2 seconds", ...store }).pipe(
      Effect.provide(client),
      Effect.orDie
    )
    yield* budget.record({ tokens: 100, usd: 1 })
    return { server, redis, budget }
  })

/** The spent budget of `setUp` (capped at 1,000 tokens) and its child `agent` (100), with nothing lost yet. */
const withChild = (store: RedisStoreOptions) =>
  Effect.gen(function*() {
    const { budget, redis } = yield* setUp(store, { name: "lost", tokenCap: 1_000 })
    const child = yield* budget.child("agent", { tokenCap: 100 })
    return { budget, child, redis }
  })

/** The spent budget of `setUp` (capped at 1,000 tokens), and its child `agent`, spent and then lost alone. */
const withLostChild = Effect.gen(function*() {
  const { budget, child, redis } = yield* withChild({})
  yield* child.record({ tokens: 100 })
  yield* redis.send("DEL", "budget:{lost}:n:lost/agent")
  return { budget, child, redis }
})

/** How `effect` failed; a defect if it succeeded (a lost budget let it through). */
const refusal = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.result(effect), (result) =>
    Result.isFailure(result)
      ? Effect.succeed(result.failure)
      : Effect.die(new Error("it succeeded: the lost budget let it through")))

describe.runIf(available)("a Redis budget whose state was lost", () => {
  it.live("is refused after Redis restarts without persistence, never let past its cap", () =>
    capturingLogs((lines) =>
      Effect.gen(function*() {
        const { budget, server } = yield* setUp()
        yield* server.restart
        const refused = yield* refusal(budget.record({ tokens: 1_000_000, usd: 1_000 }))
        assert.strictEqual(refused._tag, "BudgetUnavailable")
        assert.include(refused.message, `Budget "lost" is unavailable`)
        assert.include(refused.message, "state")
        assert.include(refused.message, "lost")
        assert.include(refused.message, "reset")
        assert.include(refused.message, "onStateLost")
        assert.strictEqual((yield* refusal(Effect.scoped(budget.reserve({ tokens: 1 }))))._tag, "BudgetUnavailable")
        const waiting = budget.reserve({ tokens: 1 }, { onExceeded: "wait" })
        assert.strictEqual((yield* refusal(Effect.scoped(waiting)))._tag, "BudgetUnavailable")
        assert.strictEqual((yield* refusal(budget.snapshot))._tag, "BudgetUnavailable")
        assert.strictEqual(lines.filter((line) => line.text.includes("lost")).length, 1, "one error log per loss")
      })
    ))

  it.live("with an append-only file, Redis killed with SIGKILL comes back with the budget as it was", () =>
    capturingLogs(() => Effect.gen(function*() {
      const { budget, server } = yield* setUp({}, spent, true)
      yield* server.restart
      assert.strictEqual((yield* refusal(budget.record({ tokens: 1 })))._tag, "BudgetExceeded")
      const snap = yield* budget.snapshot
      assert.deepStrictEqual([snap.tokensUsed, snap.usdUsed, snap.tokenCap], [100, 1, 100])
    })))

  it.live("is refused when its hash alone is gone (an eviction, a hand's DEL), also through a batch", () =>
    capturingLogs(() => Effect.gen(function*() {
      const { budget, redis } = yield* setUp()
      const keys = yield* redis.send<Array<string>>("KEYS", "*:n:lost")
      assert.strictEqual(keys.length, 1)
      yield* redis.send("DEL", keys[0]!)
      const refusals = yield* Effect.forEach(
        Array.from({ length: 50 }),
        () => refusal(budget.record({ tokens: 100 })),
        { concurrency: "unbounded" }
      )
      assert.deepStrictEqual(new Set(refusals.map((e) => e._tag)), new Set(["BudgetUnavailable"]))
      // Nothing was written into the lost budget: its hash stays gone.
      assert.strictEqual(yield* redis.send<number>("EXISTS", keys[0]!), 0)
    })))

  it.live("says so once: an error log, a StateLost event to every listener, the metric on every refusal", () =>
    capturingLogs((lines) =>
      Effect.gen(function*() {
        const { budget, redis } = yield* setUp({}, { ...spent, metrics: true })
        const seen = yield* Effect.forkScoped(budget.events.pipe(
          Stream.filter((event) => event._tag === "StateLost"),
          Stream.take(1),
          Stream.runCollect
        ))
        // the stream is listening once its registration is in Redis
        yield* Effect.repeat(redis.send<number>("EXISTS", `budget:{lost}:listeners`), {
          until: (exists) => exists === 1,
          schedule: Schedule.spaced("5 millis")
        })
        yield* redis.send("FLUSHALL")
        for (let i = 0; i < 3; i++) yield* refusal(budget.record({ tokens: 1 }))
        assert.deepStrictEqual(yield* Fiber.join(seen), [{ _tag: "StateLost", budget: "lost", recreated: false }])
        assert.strictEqual(lines.filter((line) => line.text.includes("is gone from Redis")).length, 1)
        assert.strictEqual((yield* series("lost"))["budget_state_lost_total"], 3)
      })
    ))

  it.live("reset makes it again on purpose, with nothing used and its caps; a hold from before charges the new budget", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { budget, server } = yield* setUp({}, { name: "lost", tokenCap: 1_000, usdCap: 10 })
        const before = yield* Effect.scoped(Effect.gen(function*() {
          const hold = yield* budget.reserve({ tokens: 100 })
          yield* server.restart
          assert.strictEqual((yield* refusal(hold.commit({ tokens: 80 })))._tag, "BudgetUnavailable")
          yield* budget.reset
          // stale: it charges what it used, to the budget made again
          return yield* hold.commit({ tokens: 80 })
        }))
        assert.strictEqual(before.tokens, 80)
        const snap = yield* budget.snapshot
        assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved, snap.tokenCap, snap.usdCap], [80, 0, 1_000, 10])
        assert.strictEqual((yield* refusal(budget.record({ tokens: 1_000 })))._tag, "BudgetExceeded")
      })
    ))

  it.live("onStateLost: \"recreate\" makes it again at once, caps and all, and the operation runs", () =>
    capturingLogs((lines) =>
      Effect.gen(function*() {
        const { budget, server } = yield* setUp({ onStateLost: "recreate" })
        yield* server.restart
        yield* Effect.forEach(Array.from({ length: 20 }), () => budget.record({ tokens: 5, usd: 0.05 }), {
          concurrency: "unbounded"
        })
        const refused = yield* refusal(budget.record({ tokens: 1_000_000, usd: 1_000 }))
        assert.strictEqual(refused._tag, "BudgetExceeded")
        const snap = yield* budget.snapshot
        assert.deepStrictEqual([snap.tokensUsed, snap.usdUsed, snap.tokenCap, snap.usdCap], [100, 1, 100, 1])
        assert.strictEqual(lines.filter((line) => line.text.includes("made again")).length, 1, "one of the twenty made it")
      })
    ))

  it.live("a child lost alone: its operations are refused, its parent's go on; its parent lost: it cannot open", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { budget, child, redis } = yield* withLostChild
        // in one batch: the child's refused, the root's charged
        const [refused] = yield* Effect.all([refusal(child.record({ tokens: 50 })), budget.record({ tokens: 10 })], {
          concurrency: "unbounded"
        })
        assert.strictEqual(refused._tag, "BudgetUnavailable")
        assert.include(refused.message, `the state of budget "lost/agent" is gone`)
        assert.strictEqual((yield* budget.snapshot).tokensUsed, 210)
        yield* redis.send("DEL", "budget:{lost}:n:lost")
        const unopened = yield* refusal(budget.child("other", { tokenCap: 5 }))
        assert.strictEqual(unopened._tag, "BudgetUnavailable")
        assert.include(unopened.message, `the state of budget "lost" is gone`)
      })
    ))

  it.live("a commit on a chain with a lost level charges the levels kept at once, the lost one once it is made again", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { budget, child, redis } = yield* withChild({})
        yield* Effect.scoped(Effect.gen(function*() {
          const hold = yield* child.reserve({ tokens: 40 })
          const given = yield* child.reserve({ tokens: 20 })
          yield* redis.send("DEL", "budget:{lost}:n:lost/agent")
          // a release gives back what is kept
          assert.strictEqual((yield* given.release)._tag, "Released")
          const refused = yield* refusal(hold.commit({ tokens: 30 }))
          assert.strictEqual(refused._tag, "BudgetUnavailable")
          assert.include(refused.message, `the state of budget "lost/agent" is gone`)
          // the usage happened: the parent, kept, is charged, and holds nothing more
          const parent = yield* budget.snapshot
          assert.deepStrictEqual([parent.tokensUsed, parent.tokensReserved], [130, 0])
          // the settlement that still owes the child is kept as long as an id, for a late retry
          const keys = yield* redis.send<Array<string>>("KEYS", "budget:{lost}:h:*")
          const values = yield* Effect.forEach(keys, (key) => redis.send<string>("GET", key))
          const owing = keys[values.findIndex((value) => value.startsWith("c "))]!
          assert.isAbove(yield* redis.send<number>("PTTL", owing), 3_600_000)
          // retried while the child is still lost: refused again, charged nothing more
          assert.strictEqual((yield* refusal(hold.commit({ tokens: 30 })))._tag, "BudgetUnavailable")
          yield* child.reset
          const settled = yield* hold.commit({ tokens: 30 })
          assert.strictEqual(settled.tokens, 30)
          yield* hold.commit({ tokens: 30 })
        }))
        assert.deepStrictEqual(
          [(yield* budget.snapshot).tokensUsed, (yield* child.snapshot).tokensUsed],
          [130, 30],
          "charged once at each level"
        )
      })
    ))

  it.live("a commit on a chain whose every level is lost charges none of them, and each once they are made again", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { budget, child, redis } = yield* withChild({})
        yield* Effect.scoped(Effect.gen(function*() {
          const hold = yield* child.reserve({ tokens: 40 })
          yield* redis.send("DEL", "budget:{lost}:n:lost/agent", "budget:{lost}:n:lost")
          assert.strictEqual((yield* refusal(hold.commit({ tokens: 30 })))._tag, "BudgetUnavailable")
          yield* child.reset
          assert.strictEqual((yield* hold.commit({ tokens: 30 })).tokens, 30)
        }))
        assert.deepStrictEqual([(yield* budget.snapshot).tokensUsed, (yield* child.snapshot).tokensUsed], [30, 30])
      })
    ))

  it.live("with onStateLost: \"recreate\", such a commit charges every level at once", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { budget, child, redis } = yield* withChild({ onStateLost: "recreate" })
        yield* Effect.scoped(Effect.gen(function*() {
          const hold = yield* child.reserve({ tokens: 40 })
          yield* redis.send("DEL", "budget:{lost}:n:lost/agent")
          assert.strictEqual((yield* hold.commit({ tokens: 30 })).tokens, 30)
        }))
        assert.deepStrictEqual([(yield* budget.snapshot).tokensUsed, (yield* child.snapshot).tokensUsed], [130, 30])
      })
    ))

  it.effect("onStateLost must be \"fail\" or \"recreate\"", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(RedisBudget.makeStore({ onStateLost: "ignore" as never }).pipe(
        Effect.provideService(Redis.Redis, {} as Redis.Redis["Service"])
      ))
      assert.strictEqual(error._tag, "InvalidUsage")
      assert.include(error.message, "onStateLost")
      assert.include(error.message, "ignore")
    }))

  it.live("holds from before a loss are stale in the budget made again: giving one back changes nothing", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { budget, redis } = yield* setUp({ onStateLost: "recreate" }, { name: "lost", tokenCap: 1_000 })
        yield* Effect.scoped(Effect.gen(function*() {
          const hold = yield* budget.reserve({ tokens: 60 })
          // its hash alone: the hold's key and lease outlive it
          yield* redis.send("DEL", "budget:{lost}:n:lost")
          yield* budget.record({ tokens: 1 })
          yield* hold.release
        }))
        const snap = yield* budget.snapshot
        assert.deepStrictEqual([snap.tokensReserved, snap.tokensUsed], [0, 1])
      })
    ))

  it.live("a child this process has open, lost, is not made again by opening it again", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { budget, child } = yield* withLostChild
        // as a handler that opens its child per request would
        const again = yield* refusal(budget.child("agent", { tokenCap: 100 }))
        assert.strictEqual(again._tag, "BudgetUnavailable")
        assert.include(again.message, `the state of budget "lost/agent" is gone`)
        assert.strictEqual((yield* refusal(child.record({ tokens: 100 })))._tag, "BudgetUnavailable")
      })
    ))

  it.live("a root made again after its hash alone was lost still serves the lines that outlived it", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { budget, redis } = yield* setUp({ onStateLost: "recreate" }, { name: "lost", tokenCap: 1_000 })
        const blocker = yield* budget.reserve({ tokens: 900 })
        const waiter = yield* Effect.forkChild(
          Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 500 }, { onExceeded: "wait" }), (r) => r.commit())),
          { startImmediately: true }
        )
        yield* Effect.repeat(redis.send<number>("ZCARD", "budget:{lost}:tickets"), {
          until: (tickets) => tickets === 1,
          schedule: Schedule.spaced("10 millis")
        })
        yield* redis.send("DEL", "budget:{lost}:n:lost")
        yield* budget.record({ tokens: 1 })
        // the blocker's hold is stale: giving it back wakes the line all the same
        yield* blocker.release
        const settled = yield* Fiber.join(waiter).pipe(Effect.timeout("5 seconds"))
        assert.strictEqual(settled.tokens, 500)
        assert.strictEqual(yield* redis.send<string>("HGET", "budget:{lost}:n:lost", "wq"), "0")
      })
    ), 30_000)
})
