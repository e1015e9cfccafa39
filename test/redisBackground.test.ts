/**
 * The Redis store's background work (batches, lease renewal, metric
 * refresh, window ends, listener registration) runs in the scope of the
 * budget that started it, stops when that scope closes, and reports its
 * failures at `References.UnhandledLogLevel` instead of swallowing them.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Context, Deferred, Effect, Exit, Fiber, Layer, Logger, References, Scope } from "effect"
import * as Redis from "effect/persistence/Redis"
import * as Scripts from "../src/internal/redis/scripts.ts"
import { RedisBudget } from "../src/redis.ts"
import { available, RedisLive, testPrefix } from "./support/redis.ts"

/** Every message logged at `level`. */
const logged = (level: string) => {
  const messages: Array<string> = []
  const logger = Logger.make(({ cause, logLevel, message }) => {
    const parts: ReadonlyArray<unknown> = Array.isArray(message) ? message : [message]
    if (logLevel === level) messages.push(`${parts.join(" ")} ${Cause.pretty(cause)}`)
  })
  return { messages, layer: Logger.layer([logger]) }
}

describe.runIf(available)("background work on Redis", () => {
  it.live("a batch in flight when the budget's scope closes is interrupted with it", () =>
    Effect.gen(function*() {
      const redis = yield* Effect.map(Layer.build(RedisLive), Context.get(Redis.Redis))
      const interrupted = yield* Deferred.make<void>()
      // A Redis that never answers the batch script, and says when its wait ends.
      const stalling: Redis.Redis["Service"] = {
        ...redis,
        eval: (script) => (...params) =>
          (script as unknown) !== Scripts.batch
            ? redis.eval(script)(...params)
            : Effect.onInterrupt(Effect.never, () => Deferred.succeed(interrupted, undefined))
      }
      const scope = yield* Scope.make()
      const budget = yield* RedisBudget.make({ name: "closing", tokenCap: 100 }, {
        prefix: testPrefix("background"),
        timeout: "1 minute"
      }).pipe(Effect.provideService(Redis.Redis, stalling), Scope.provide(scope))
      const record = yield* Effect.forkChild(budget.record({ tokens: 1 }), { startImmediately: true })
      yield* Scope.close(scope, Exit.void)
      // Well before the minute's timeout: the scope's closing ended the batch.
      yield* Deferred.await(interrupted).pipe(Effect.timeout("5 seconds"))
      yield* Fiber.interrupt(record)
    }))

  it.effect("leases are renewed on the host's clock: under TestClock a hold outlives its lease while its scope is open", () =>
    Effect.gen(function*() {
      const budget = yield* RedisBudget.make({ name: "renewed", tokenCap: 100 }, {
        prefix: testPrefix("background"),
        leaseTtl: "1 second"
      }).pipe(Effect.provide(yield* Layer.build(RedisLive)))
      yield* budget.reserve({ tokens: 100 })
      // Two and a half leases of the host's time, while TestClock stands still.
      yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 2_500)))
      const snapshot = yield* budget.snapshot // reaps what has expired
      assert.strictEqual(snapshot.tokensReserved, 100, "the hold was renewed, not reaped")
      assert.strictEqual((yield* Effect.flip(budget.reserve({ tokens: 1 })))._tag, "BudgetExceeded")
    }))

  it.live("a renewal that fails is reported at References.UnhandledLogLevel", () => {
    const log = logged("Warn")
    return Effect.gen(function*() {
      const redis = yield* Effect.map(Layer.build(RedisLive), Context.get(Redis.Redis))
      const failing: Redis.Redis["Service"] = {
        ...redis,
        eval: (script) => (...params) =>
          (script as unknown) === Scripts.renew
            ? Effect.fail(new Redis.RedisError({ cause: new Error("renewal refused") }))
            : redis.eval(script)(...params)
      }
      const budget = yield* RedisBudget.make({ name: "renewing", tokenCap: 100 }, {
        prefix: testPrefix("background"),
        leaseTtl: "300 millis"
      }).pipe(Effect.provideService(Redis.Redis, failing))
      yield* budget.reserve({ tokens: 10 })
      // Renewals run every 100 ms while the hold is open.
      const reported = () => log.messages.some((m) => m.includes("could not renew this process's leases"))
      yield* Effect.sleep("20 millis").pipe(Effect.repeat({ until: reported }), Effect.timeout("5 seconds"))
      assert.isTrue(log.messages.some((m) => m.includes("renewal refused")), "the cause is logged with it")
    }).pipe(Effect.provide(log.layer), Effect.provideService(References.UnhandledLogLevel, "Warn"))
  })
})
