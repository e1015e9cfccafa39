import { assert, describe, it } from "@effect/vitest"
import { Config, ConfigProvider, Effect, Exit, Layer } from "effect"
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
