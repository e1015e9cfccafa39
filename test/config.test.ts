import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Effect, Exit, Layer } from "effect"
import { Budget } from "../src/index.ts"

const withEnv = (env: Record<string, string>) => ConfigProvider.layer(ConfigProvider.fromEnv({ env }))

const snapshotFrom = (
  layer: Layer.Layer<Budget, unknown>,
  env: Record<string, string>,
  provider: Layer.Layer<never> = withEnv(env)
) =>
  Effect.gen(function*() {
    const budget = yield* Budget
    return yield* budget.snapshot
  }).pipe(Effect.provide(layer.pipe(Layer.provide(provider))))

// The errors a layer fails to build with, read from the environment `env`,
// the same keys from a plain object, and from an environment whose empty
// strings are kept as values.
const failuresFrom = (layer: Layer.Layer<Budget, unknown>, env: Record<string, string>) =>
  Effect.all([
    Effect.flip(snapshotFrom(layer, env)),
    Effect.flip(snapshotFrom(layer, env, ConfigProvider.layer(ConfigProvider.fromUnknown(env)))),
    Effect.flip(
      snapshotFrom(layer, env, ConfigProvider.layer(ConfigProvider.fromEnv({ env, preserveEmptyStrings: true })))
    )
  ]).pipe(Effect.map((errors) => errors as Array<{ readonly _tag: string; readonly field: string; readonly message: string }>))

describe("Budget.layerConfig", () => {
  it.effect("reads the name and caps from BUDGET_NAME, BUDGET_TOKEN_CAP and BUDGET_USD_CAP", () =>
    Effect.gen(function*() {
      const snap = yield* snapshotFrom(Budget.layerConfig(), {
        BUDGET_NAME: "evals",
        BUDGET_TOKEN_CAP: "1000000",
        BUDGET_USD_CAP: "12.5"
      })
      assert.deepStrictEqual([snap.name, snap.tokenCap, snap.usdCap], ["evals", 1_000_000, 12.5])
    }))

  it.effect("leaves an axis unbounded when its variable is left out", () =>
    Effect.gen(function*() {
      const snap = yield* snapshotFrom(Budget.layerConfig(), { BUDGET_USD_CAP: "3" })
      assert.deepStrictEqual([snap.name, snap.tokenCap, snap.usdCap], ["budget", Infinity, 3])
    }))

  it.effect("with no variable set, has no cap", () =>
    Effect.gen(function*() {
      const snap = yield* snapshotFrom(Budget.layerConfig(), {})
      assert.deepStrictEqual([snap.name, snap.tokenCap, snap.usdCap], ["budget", Infinity, Infinity])
    }))

  it.effect("an empty variable is an error naming its key, not a cap left out", () =>
    Effect.gen(function*() {
      for (const key of ["BUDGET_USD_CAP", "BUDGET_TOKEN_CAP", "BUDGET_NAME"]) {
        for (const error of yield* failuresFrom(Budget.layerConfig(), { [key]: "" })) {
          assert.strictEqual(error._tag, "InvalidUsage", key)
          assert.strictEqual(error.field, key)
          assert.include(error.message, `Invalid ${key}:`)
          assert.include(error.message, "got \"\"")
          assert.include(error.message, "left out")
        }
      }
    }))

  it.effect("a variable whose name only begins with a key does not set it", () =>
    Effect.gen(function*() {
      const snap = yield* snapshotFrom(Budget.layerConfig(), { BUDGET_USD_CAP_NOTE: "", BUDGET_TOKEN_CAP_X: "5" })
      assert.deepStrictEqual([snap.tokenCap, snap.usdCap], [Infinity, Infinity])
    }))

  it.effect("an empty cap fails with the other caps set too", () =>
    Effect.gen(function*() {
      const [error] = yield* failuresFrom(Budget.layerConfig(), { BUDGET_TOKEN_CAP: "1000", BUDGET_USD_CAP: "" })
      assert.strictEqual(
        error!.message,
        "Invalid BUDGET_USD_CAP: must be a number of US dollars from 0 to 9007199, such as 10 or 12.5 (left out, not empty, for no cap), got \"\""
      )
    }))

  it.effect("an unparsable cap names the key, the value as given and a valid example", () =>
    Effect.gen(function*() {
      for (const error of yield* failuresFrom(Budget.layerConfig(), { BUDGET_USD_CAP: "10_000" })) {
        assert.strictEqual(
          error.message,
          "Invalid BUDGET_USD_CAP: must be a number of US dollars from 0 to 9007199, such as 10 or 12.5 (left out, not empty, for no cap), got \"10_000\" (a string)"
        )
      }
      for (const error of yield* failuresFrom(Budget.layerConfig(), { BUDGET_TOKEN_CAP: "lots" })) {
        assert.strictEqual(
          error.message,
          "Invalid BUDGET_TOKEN_CAP: must be a whole number of tokens from 0 to 9007199254740991, such as 1000000 (left out, not empty, for no cap), got \"lots\" (a string)"
        )
      }
    }))

  it.effect("a cap out of range, fractional tokens, Infinity or NaN fail naming the key", () =>
    Effect.gen(function*() {
      const cases: Array<[string, string]> = [
        ["BUDGET_USD_CAP", "-1"],
        ["BUDGET_USD_CAP", "Infinity"],
        ["BUDGET_USD_CAP", "NaN"],
        ["BUDGET_USD_CAP", "1e10"],
        ["BUDGET_USD_CAP", " 12 "],
        ["BUDGET_TOKEN_CAP", "1.5"],
        ["BUDGET_TOKEN_CAP", "-Infinity"],
        ["BUDGET_TOKEN_CAP", "0x10"]
      ]
      for (const [key, value] of cases) {
        for (const error of yield* failuresFrom(Budget.layerConfig(), { [key]: value })) {
          assert.strictEqual(error._tag, "InvalidUsage", `${key}=${value}`)
          assert.include(error.message, `Invalid ${key}:`)
          assert.include(error.message, `got ${JSON.stringify(value)} (a string)`)
        }
      }
    }))

  it.effect("a name with \"/\" names BUDGET_NAME", () =>
    Effect.gen(function*() {
      for (const error of yield* failuresFrom(Budget.layerConfig(), { BUDGET_NAME: "org/evals" })) {
        assert.strictEqual(
          error.message,
          "Invalid BUDGET_NAME: must be a name without \"/\", such as evals (left out, not empty, for the name \"budget\"), got \"org/evals\" (a string)"
        )
      }
    }))

  it.effect("reads the keys under a nested provider, with the same rules", () =>
    Effect.gen(function*() {
      const nested = (env: Record<string, string>) =>
        ConfigProvider.layer(ConfigProvider.fromEnv({ env }).pipe(ConfigProvider.nested("EVALS")))
      const snap = yield* snapshotFrom(Budget.layerConfig(), {}, nested({ EVALS_BUDGET_USD_CAP: "7", BUDGET_USD_CAP: "1" }))
      assert.strictEqual(snap.usdCap, 7)
      const error = yield* Effect.flip(snapshotFrom(Budget.layerConfig(), {}, nested({ EVALS_BUDGET_USD_CAP: "" })))
      assert.strictEqual((error as { field: string }).field, "BUDGET_USD_CAP")
    }))

  it.effect("takes Configs of the caller's own", () =>
    Effect.gen(function*() {
      const layer = Budget.layerConfig({ name: Config.succeed("team"), tokenCap: Config.Int("TEAM_TOKENS") })
      const snap = yield* snapshotFrom(layer, { TEAM_TOKENS: "500" })
      assert.deepStrictEqual([snap.name, snap.tokenCap, snap.usdCap], ["team", 500, Infinity])
    }))

  it.effect("with Configs of the caller's own, a bad cap is InvalidUsage and a missing or unparsable one a ConfigError", () =>
    Effect.gen(function*() {
      const layer = Budget.layerConfig({ usdCap: Config.Number("TEAM_USD") })
      const negative = yield* Effect.flip(snapshotFrom(layer, { TEAM_USD: "-1" }))
      assert.strictEqual((negative as { _tag: string })._tag, "InvalidUsage")
      assert.include((negative as Error).message, "usdCap")
      const empty = yield* Effect.flip(snapshotFrom(layer, { TEAM_USD: "" }))
      assert.strictEqual((empty as { _tag: string })._tag, "ConfigError")
      const garbage = yield* Effect.flip(snapshotFrom(layer, { TEAM_USD: "lots" }))
      assert.strictEqual((garbage as { _tag: string })._tag, "ConfigError")
    }))
})

describe("Budget.layer", () => {
  it.effect("fails to build with InvalidUsage on a bad cap", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Effect.provide(Effect.asVoid(Budget), Budget.layer({ tokenCap: -5 })))
      assert.strictEqual(error._tag, "InvalidUsage")
      assert.strictEqual(error.message, "Invalid tokenCap: must be a whole number from 0 to 9007199254740991, or left out for no cap, got -5")
    }))

  // A request of 600 tokens, run in a fiber of its own; a cap of 1,000
  // admits one such request, not two.
  const ask = Effect.gen(function*() {
    const budget = yield* Budget
    return yield* Effect.exit(budget.record({ tokens: 600 }))
  })

  it.effect("provided once, is one budget shared by two fibers: of two requests of 600 on a cap of 1,000, one is refused", () =>
    Effect.gen(function*() {
      const exits = yield* Effect.all([ask, ask], { concurrency: 2 })
      assert.deepStrictEqual(exits.map(Exit.isSuccess).sort(), [false, true])
    }).pipe(Effect.provide(Budget.layer({ tokenCap: 1_000 }))))

  it.effect("provided twice (once to each fiber), is two budgets: both requests of 600 pass", () =>
    Effect.gen(function*() {
      const BudgetLive = Budget.layer({ tokenCap: 1_000 })
      const exits = yield* Effect.all([Effect.provide(ask, BudgetLive), Effect.provide(ask, BudgetLive)], { concurrency: 2 })
      assert.deepStrictEqual(exits.map(Exit.isSuccess), [true, true])
    }))
})
