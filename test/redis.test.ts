import { assert, describe, it } from "@effect/vitest"
import { Cron, Effect } from "effect"
import { contract } from "./contract.ts"
import { properties, treeProperties } from "./properties.ts"
import { available, makeRedisBudget, settleRedis } from "./support/redis.ts"

// A round trip per charge: fewer of them, each still a fraction of a cent
// that floating point cannot hold exactly.
const remote = { settle: settleRedis, drainWaiters: 2_000, smallCharges: 100_000 }

const redis = { name: "the Redis store", make: makeRedisBudget, ...remote }

const child = {
  name: "a grandchild in the Redis store",
  ...remote,
  make: ({ name, ...options }: Parameters<typeof makeRedisBudget>[0]) =>
    makeRedisBudget({ name: "org" }).pipe(
      Effect.flatMap((org) => org.child("tenant")),
      Effect.flatMap((tenant) => tenant.child(name ?? "agent", options))
    )
}

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

  it.effect("a bad lease or timeout fails with InvalidUsage, and a cron window is refused for now", () =>
    Effect.gen(function*() {
      const lease = yield* Effect.flip(makeRedisBudget({ leaseTtl: "soon" as never }))
      assert.include((lease as Error).message, "Invalid leaseTtl")
      const timeout = yield* Effect.flip(makeRedisBudget({ timeout: "0 millis" }))
      assert.include((timeout as Error).message, "Invalid timeout")
      const cron = yield* Effect.flip(makeRedisBudget({ window: Cron.parseUnsafe("0 0 1 * *") }))
      assert.include((cron as Error).message, "Invalid window")
    }))

  contract(redis)
  contract(child)
  properties(redis, 30)
  treeProperties(redis, 20)
})
