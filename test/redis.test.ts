import { assert, describe, it } from "@effect/vitest"
import { Context, Cron, Effect, Layer, Logger, Stream } from "effect"
import { LanguageModel } from "effect/ai"
import * as Redis from "effect/persistence/Redis"
import { Budget, BudgetedLanguageModel } from "../src/index.ts"
import * as Scripts from "../src/internal/redis/scripts.ts"
import { RedisBudget } from "../src/redis.ts"
import { BudgetStoreContract } from "../src/testing.ts"
import { available, makeRedisBudget, makeRedisStore, RedisLive, runBatch, settleRedis, testPrefix } from "./support/redis.ts"

// A round trip per charge: fewer of them, each still a fraction of a cent
// that floating point cannot hold exactly.
const redis = {
  name: "the Redis store",
  make: BudgetStoreContract.makeFromStore(makeRedisStore()),
  settle: settleRedis,
  drainWaiters: 2_000,
  smallCharges: 100_000
}
const child = BudgetStoreContract.grandchild(redis)

describe.runIf(available)("Redis", () => {
  it.effect("a commit built but never run leaves the scope to release the hold", () =>
    Effect.gen(function*() {
      const budget = yield* makeRedisBudget({ tokenCap: 100 })
      yield* Effect.scoped(Effect.gen(function*() {
        const hold = yield* budget.reserve({ tokens: 30 })
        hold.commit({ tokens: 5 }) // an effect, not a commit: nothing was sent
      }))
      const snap = yield* budget.snapshot
      assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [0, 0])
    }))

  it.effect("a bad lease or timeout fails with InvalidUsage", () =>
    Effect.gen(function*() {
      const lease = yield* Effect.flip(makeRedisBudget({ leaseTtl: "soon" as never }))
      assert.include((lease as Error).message, "Invalid leaseTtl")
      const timeout = yield* Effect.flip(makeRedisBudget({ timeout: "0 millis" }))
      assert.include((timeout as Error).message, "Invalid timeout")
    }))

  it.effect("two processes opening one budget with other caps: the caps given last apply, and the opener warns", () => {
    const warnings: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      if (logLevel === "Warn") warnings.push((Array.isArray(message) ? message : [message]).join(" "))
    })
    return Effect.gen(function*() {
      const prefix = testPrefix("caps")
      // Two stores on their own connections, as two processes.
      const open = (usdCap: number) =>
        Effect.flatMap(Layer.build(RedisLive), (redis) =>
          RedisBudget.make({ name: "shared", usdCap }, { prefix }).pipe(Effect.provide(redis)))
      const first = yield* open(100)
      yield* open(5)
      assert.strictEqual((yield* first.snapshot).usdCap, 5)
      yield* open(100)
      assert.strictEqual((yield* first.snapshot).usdCap, 100)
      assert.strictEqual(warnings.length, 2)
      assert.include(warnings[0], "usdCap $5")
      assert.include(warnings[0], "where it had tokenCap none and usdCap $100")
    }).pipe(Effect.provide(Logger.layer([logger])))
  })

  it.effect("BudgetedLanguageModel's per-model limits on a Redis budget open the model's child with its rate", () =>
    Effect.gen(function*() {
      const budget = yield* makeRedisBudget({ name: "llm" })
      const inner = yield* LanguageModel.make({ generateText: () => Effect.succeed([]), streamText: () => Stream.empty })
      yield* BudgetedLanguageModel.make({ limits: { "gpt-5-mini": { rate: { tokens: 2_000_000, per: "1 minute" } } } }).pipe(
        Effect.provideService(LanguageModel.LanguageModel, inner),
        Effect.provideService(Budget, budget)
      )
      const model = yield* budget.child("model:gpt-5-mini", { rate: { tokens: 2_000_000, per: "1 minute" } })
      assert.deepStrictEqual((yield* model.snapshot).rates, [{ axis: "tokens", available: 2_000_000, capacity: 2_000_000 }])
    }))

  it.effect("a prefix with a brace fails with InvalidUsage naming it when the store is made", () =>
    Effect.gen(function*() {
      const redis = yield* Layer.build(RedisLive)
      for (const prefix of ["team{a}:", "}", "{"]) {
        const error = yield* Effect.flip(
          RedisBudget.make({ name: "braces" }, { prefix }).pipe(Effect.provide(redis))
        )
        assert.strictEqual(error._tag, "InvalidUsage")
        assert.include(error.message, "Invalid prefix")
        assert.include(error.message, JSON.stringify(prefix))
      }
    }))

  it.live("a cron window restarts a budget and its child at the schedule's ends, on Redis's clock", () =>
    Effect.gen(function*() {
      const everyTwoSeconds = Cron.parseUnsafe("*/2 * * * * *", "UTC")
      const org = yield* makeRedisBudget({ name: "org", tokenCap: 100, window: everyTwoSeconds })
      const team = yield* org.child("team", { window: everyTwoSeconds })
      // Start just after a window begins, so the record and the first
      // snapshot fall in the same one.
      yield* Effect.sleep(2_000 - (Date.now() % 2_000) + 50)
      yield* team.record({ tokens: 30 })
      const before = yield* org.snapshot
      const end = before.windowEndsAt!
      assert.strictEqual(end % 2_000, 0, "ends on an even second")
      assert.isAtMost(end - Date.now(), 2_500)
      assert.strictEqual(before.tokensUsed, 30)
      yield* Effect.sleep(Math.max(0, end - Date.now()) + 100)
      const [after, child] = [yield* org.snapshot, yield* team.snapshot]
      assert.deepStrictEqual([after.tokensUsed, child.tokensUsed], [0, 0])
      assert.strictEqual(after.windowEndsAt, end + 2_000)
    }))

  it.live("an operation alone after its window ended counts in the new window, on Redis's clock", () =>
    Effect.gen(function*() {
      // A second: long enough that the window cannot end again before the
      // checks that follow, even on a slow machine.
      const budget = yield* makeRedisBudget({ name: "org", tokenCap: 100, window: "1 second" })
      yield* budget.record({ tokens: 30 })
      const end = (yield* budget.snapshot).windowEndsAt!
      yield* Effect.sleep(Math.max(0, end - Date.now()) + 100)
      // Nothing in between rolls the window: the record itself must.
      yield* budget.record({ tokens: 20 })
      const hold = yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 5 }), (r) => r.commit()))
      const after = yield* budget.snapshot
      assert.deepStrictEqual([hold.tokens, after.tokensUsed, after.tokensReserved], [5, 25, 0])
      assert.isAbove(after.windowEndsAt!, end)
    }))

  it.effect("a cron window that runs out of written ends waits for a process to write more", () =>
    Effect.gen(function*() {
      const redis = yield* Effect.map(Layer.build(RedisLive), Context.get(Redis.Redis))
      const tree = `${testPrefix("ends")}{t}`
      const key = `${tree}:n:t`
      const soon = Date.now() + 300
      const record = runBatch(redis, tree, [{ _tag: "Record", chain: [key], tokens: 5, nanos: 0 }])
      yield* redis.eval(Scripts.ensure)([key], tree, -1, -1, "", -1, "cron test", true, "", -1, -1, 0, [soon])
      yield* record
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 400)))
      // Past its last end: the window restarts, and its end is unknown.
      assert.deepStrictEqual((yield* redis.eval(Scripts.snapshot)([key], tree)).slice(0, 1), ["0"])
      yield* record
      assert.strictEqual((yield* redis.eval(Scripts.snapshot)([key], tree))[7], "0")
      yield* redis.eval(Scripts.extend)([key], tree, [soon + 5_000])
      const [used, , , , , , , end] = yield* redis.eval(Scripts.snapshot)([key], tree)
      assert.deepStrictEqual([used, end], ["5", String(soon + 5_000)])
      yield* redis.send("UNLINK", key, `${tree}:b:t`)
    }))

  BudgetStoreContract.contract(redis)
  BudgetStoreContract.contract(child)
  BudgetStoreContract.properties(redis, { numRuns: 30, limits: "store clock" })
  BudgetStoreContract.treeProperties(redis, { numRuns: 20 })
})
