import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Context, Effect, Layer } from "effect"
import * as Redis from "effect/persistence/Redis"
import { Budget } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { available, RedisLive, testPrefix } from "./support/redis.ts"

const withEnv = (env: Record<string, string>) => ConfigProvider.layer(ConfigProvider.fromEnv({ env }))

// A Redis that records every command sent to it and answers none: a layer
// that fails on its configuration must send it nothing.
const recordingRedis = () => {
  const sent: Array<string> = []
  const refuse = (what: string) =>
    Effect.suspend(() => {
      sent.push(what)
      return Effect.die(new Error(`sent ${what} to a Redis no test may reach`))
    })
  const redis = Redis.Redis.of({
    send: (command) => refuse(command),
    subscribe: (channel) => refuse(`SUBSCRIBE ${channel}`),
    eval: () => () => refuse("EVALSHA"),
    reserve: refuse("a reserved connection")
  })
  return { sent, layer: Layer.succeed(Redis.Redis, redis) }
}

const failureFrom = (env: Record<string, string>, preserveEmptyStrings = false) => {
  const redis = recordingRedis()
  const provider = ConfigProvider.layer(ConfigProvider.fromEnv({ env, preserveEmptyStrings }))
  return Layer.build(RedisBudget.layerConfig().pipe(Layer.provide([redis.layer, provider]))).pipe(
    Effect.flip,
    Effect.map((error) => ({ error, sent: redis.sent }))
  )
}

const durationRule = (examples: string, unset: string) =>
  `must be a positive, finite Duration, such as ${examples} (left out, not empty, for ${unset})`

describe("RedisBudget.layerConfig, configured wrong", () => {
  it.effect("an empty or invalid key fails with InvalidUsage naming the key and the value, and sends Redis nothing", () =>
    Effect.gen(function*() {
      const cases: Array<[string, string, string]> = [
        ["BUDGET_REDIS_LEASE_TTL", "", durationRule("\"30 seconds\" or \"2 minutes\"", "30 seconds")],
        ["BUDGET_REDIS_LEASE_TTL", "30", durationRule("\"30 seconds\" or \"2 minutes\"", "30 seconds")],
        ["BUDGET_REDIS_TIMEOUT", "", durationRule("\"5 seconds\" or \"500 millis\"", "5 seconds")],
        ["BUDGET_REDIS_TIMEOUT", "0 seconds", durationRule("\"5 seconds\" or \"500 millis\"", "5 seconds")],
        ["BUDGET_REDIS_ID_TTL", "", durationRule("\"1 day\" or \"6 hours\"", "1 day")],
        ["BUDGET_REDIS_ID_TTL", "a day", durationRule("\"1 day\" or \"6 hours\"", "1 day")],
        ["BUDGET_REDIS_ON_STATE_LOST", "", "must be \"fail\", \"recreate\" or \"restore\" (left out, not empty, for \"fail\")"],
        ["BUDGET_REDIS_ON_STATE_LOST", "Recreate", "must be \"fail\", \"recreate\" or \"restore\" (left out, not empty, for \"fail\")"],
        ["BUDGET_REDIS_PREFIX", "", "must be a key prefix without \"{\" or \"}\", such as llm: (left out, not empty, for \"budget:\")"],
        ["BUDGET_REDIS_PREFIX", "llm:{a}:", "must be a key prefix without \"{\" or \"}\", such as llm: (left out, not empty, for \"budget:\")"],
        ["BUDGET_USD_CAP", "", "must be a number of US dollars from 0 to 9007199, such as 10 or 12.5 (left out, not empty, for no cap)"],
        ["BUDGET_TOKEN_CAP", "1_000", "must be a whole number of tokens from 0 to 9007199254740991, such as 1000000 (left out, not empty, for no cap)"]
      ]
      for (const [key, value, reason] of cases) {
        for (const preserveEmptyStrings of [false, true]) {
          const env = { BUDGET_NAME: "evals", BUDGET_USD_CAP: "5", [key]: value }
          const { error, sent } = yield* failureFrom(env, preserveEmptyStrings)
          const got = value === "" ? "\"\"" : `${JSON.stringify(value)} (a string)`
          assert.strictEqual(error._tag, "InvalidUsage", `${key}=${value}`)
          assert.strictEqual(error.message, `Invalid ${key}: ${reason}, got ${got}`)
          assert.deepStrictEqual(sent, [], `${key}=${value}`)
        }
      }
    }))
})

describe.runIf(available)("RedisBudget.layerConfig", () => {
  it.effect("reads the budget's options and the store's from BUDGET_* and BUDGET_REDIS_*", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("config")
      const env = {
        BUDGET_NAME: "evals",
        BUDGET_USD_CAP: "5",
        BUDGET_REDIS_PREFIX: prefix,
        BUDGET_REDIS_LEASE_TTL: "2 seconds",
        BUDGET_REDIS_TIMEOUT: "3 seconds",
        BUDGET_REDIS_ON_STATE_LOST: "recreate",
        BUDGET_REDIS_ID_TTL: "1 hour"
      }
      const context = yield* Layer.build(RedisBudget.layerConfig().pipe(Layer.provide([RedisLive, withEnv(env)])))
      const budget = Context.get(context, Budget)
      yield* budget.record({ usd: 1 })
      const snap = yield* budget.snapshot
      assert.deepStrictEqual([snap.name, snap.usdCap, snap.usdUsed], ["evals", 5, 1])
      const redis = Context.get(yield* Layer.build(RedisLive), Redis.Redis)
      const keys = yield* redis.send<Array<string>>("KEYS", `${prefix}*`)
      assert.isAbove(keys.length, 0)
      assert.isTrue(keys.every((key) => key.startsWith(`${prefix}{evals}`)), keys.join(", "))
    }))
})
