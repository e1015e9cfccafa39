import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Effect, Layer } from "effect"
import { Budget } from "../src/index.ts"

const snapshotFrom = (layer: Layer.Layer<Budget, unknown>, env: Record<string, string>) =>
  Effect.gen(function*() {
    const budget = yield* Budget
    return yield* budget.snapshot
  }).pipe(
    Effect.provide(layer.pipe(Layer.provide(ConfigProvider.layer(ConfigProvider.fromEnv({ env })))))
  )

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

  it.effect("leaves an axis unbounded when its variable is missing", () =>
    Effect.gen(function*() {
      const snap = yield* snapshotFrom(Budget.layerConfig(), { BUDGET_USD_CAP: "3" })
      assert.deepStrictEqual([snap.name, snap.tokenCap, snap.usdCap], ["budget", Infinity, 3])
    }))

  it.effect("with no variable set, has no cap", () =>
    Effect.gen(function*() {
      const snap = yield* snapshotFrom(Budget.layerConfig(), {})
      assert.deepStrictEqual([snap.name, snap.tokenCap, snap.usdCap], ["budget", Infinity, Infinity])
    }))

  it.effect("takes Configs of the caller's own", () =>
    Effect.gen(function*() {
      const layer = Budget.layerConfig({ name: Config.succeed("team"), tokenCap: Config.Int("TEAM_TOKENS") })
      const snap = yield* snapshotFrom(layer, { TEAM_TOKENS: "500" })
      assert.deepStrictEqual([snap.name, snap.tokenCap, snap.usdCap], ["team", 500, Infinity])
    }))

  it.effect("fails with InvalidUsage on a negative cap, and ConfigError on a non-number", () =>
    Effect.gen(function*() {
      const negative = yield* Effect.flip(snapshotFrom(Budget.layerConfig(), { BUDGET_USD_CAP: "-1" }))
      assert.strictEqual((negative as { _tag: string })._tag, "InvalidUsage")
      assert.include((negative as Error).message, "usdCap")
      const garbage = yield* Effect.flip(snapshotFrom(Budget.layerConfig(), { BUDGET_TOKEN_CAP: "lots" }))
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

  it.effect("gives every user of the layer one shared budget", () =>
    Effect.gen(function*() {
      const a = yield* Budget
      const b = yield* Budget
      yield* a.record({ tokens: 5 })
      assert.strictEqual((yield* b.snapshot).tokensUsed, 5)
    }).pipe(Effect.provide(Budget.layer({ tokenCap: 10 }))))
})
