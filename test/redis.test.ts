import { describe } from "@effect/vitest"
import { Effect } from "effect"
import { contract } from "./contract.ts"
import { properties, treeProperties } from "./properties.ts"
import { available, makeRedisBudget, settleRedis } from "./support/redis.ts"

const redis = { name: "the Redis store", make: makeRedisBudget, settle: settleRedis, drainWaiters: 2_000 }

const child = {
  name: "a grandchild in the Redis store",
  settle: settleRedis,
  drainWaiters: 2_000,
  make: ({ name, ...options }: Parameters<typeof makeRedisBudget>[0]) =>
    makeRedisBudget({ name: "org" }).pipe(
      Effect.flatMap((org) => org.child("tenant")),
      Effect.flatMap((tenant) => tenant.child(name ?? "agent", options))
    )
}

describe.runIf(available)("Redis", () => {
  contract(redis)
  contract(child)
  properties(redis, 30)
  treeProperties(redis, 20)
})
