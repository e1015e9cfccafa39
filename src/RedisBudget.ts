/**
 * Budgets kept in Redis, shared by every process that reaches them: a
 * `BudgetStore` over the `Redis` service of `effect/persistence/Redis`
 * (provide a driver, such as `NodeRedis.layer` from `@effect/platform-node`).
 * Every operation is one script round trip on Redis's clock; holds are
 * leases, renewed while their scope is open.
 *
 * @since 0.2.0
 */
import { Config, Effect, Layer, Option } from "effect"
import type { Duration, Scope } from "effect"
import type * as Redis from "effect/persistence/Redis"
import { Budget } from "./Budget.ts"
import type { BudgetOptions, BudgetService } from "./Budget.ts"
import type { BudgetUnavailable } from "./BudgetError.ts"
import { InvalidUsage } from "./BudgetError.ts"
import { BudgetStore } from "./BudgetStore.ts"
import * as Ledger from "./Ledger.ts"
import { parseDuration, read } from "./internal/config.ts"
import type { Key } from "./internal/config.ts"
import { millisOf, optionsFromConfig } from "./internal/options.ts"
import * as RedisStore from "./internal/redis/store.ts"

/**
 * Where a Redis store keeps its keys, and how it treats holds and round
 * trips. Separate from a budget's own options: one store keeps many
 * budgets.
 *
 * @since 0.2.0
 * @category models
 */
export interface StoreOptions {
  /**
   * Prefix of every key; defaults to `"budget:"`. It may not contain `{` or
   * `}`: the keys of a tree share the hash tag `{<root name>}`, which keeps
   * them in one Redis Cluster slot.
   */
  readonly prefix?: string | undefined
  /** A hold's lease, renewed three times a lease while its scope is open; defaults to 30 seconds. */
  readonly leaseTtl?: Duration.Input | undefined
  /** How long one round trip may take before it fails with `BudgetUnavailable`; defaults to 5 seconds. */
  readonly timeout?: Duration.Input | undefined
  /**
   * What an operation does when it finds its budget's state gone from
   * Redis (a restart without persistence, an eviction, a flush, a
   * failover): `"fail"` (the default) refuses it, and every operation on
   * the budget, with `BudgetUnavailable` (cause `BudgetStateLost`) until
   * `reset` makes the budget again; `"recreate"` makes it again at once,
   * with nothing used, and runs the operation; `"restore"` makes it again
   * with what the ledger says it spent in its current window, then runs the
   * operation (the store needs a `Ledger.Sink` and `Ledger.Totals` in its
   * context: `PgLedger.layer` provides both; see docs/ledger.md#restore).
   * Either way an error log, a `StateLost` event and the
   * `budget_state_lost_total` metric say so. See
   * docs/distributed.md#lost-state.
   */
  readonly onStateLost?: "fail" | "recreate" | "restore" | undefined
  /**
   * How long an idempotency key (`{ id }` on `record` and `reserve`) is
   * kept, from its last use: a retry within it charges once. Defaults to
   * 1 day; each key costs Redis a small key for that long.
   */
  readonly idTtl?: Duration.Input | undefined
}

/**
 * Makes a Redis `BudgetStore`; fails with `InvalidUsage` when an option is
 * not usable.
 *
 * @since 0.2.0
 * @category constructors
 */
export const makeStore = (
  options: StoreOptions = {}
): Effect.Effect<BudgetStore["Service"], InvalidUsage, Redis.Redis> =>
  Effect.suspend(() => {
    const leaseMillis = millisOf("leaseTtl", options.leaseTtl ?? "30 seconds")
    const timeoutMillis = millisOf("timeout", options.timeout ?? "5 seconds")
    const idTtlMillis = millisOf("idTtl", options.idTtl ?? "1 day")
    if (leaseMillis instanceof InvalidUsage) return Effect.fail(leaseMillis)
    if (timeoutMillis instanceof InvalidUsage) return Effect.fail(timeoutMillis)
    if (idTtlMillis instanceof InvalidUsage) return Effect.fail(idTtlMillis)
    const prefix = options.prefix ?? "budget:"
    if (typeof prefix !== "string" || /[{}]/.test(prefix)) {
      return Effect.fail(
        new InvalidUsage({
          field: "prefix",
          value: prefix,
          reason: "must be a string without \"{\" or \"}\" (a tree's keys share the hash tag of its root's name)"
        })
      )
    }
    const onStateLost = options.onStateLost ?? "fail"
    if (onStateLost !== "fail" && onStateLost !== "recreate" && onStateLost !== "restore") {
      return Effect.fail(
        new InvalidUsage({ field: "onStateLost", value: onStateLost, reason: "must be \"fail\", \"recreate\" or \"restore\"" })
      )
    }
    return Effect.gen(function*() {
      const sink = Option.getOrUndefined(yield* Effect.serviceOption(Ledger.Sink))
      const totals = Option.getOrUndefined(yield* Effect.serviceOption(Ledger.Totals))
      // Rebuilt from a ledger the store does not write, a budget would miss every charge since.
      if (onStateLost === "restore" && (sink === undefined || totals === undefined)) {
        return yield* new InvalidUsage({
          field: "onStateLost",
          value: onStateLost,
          reason: `rebuilds a lost budget from the ledger, so the store needs a Ledger.Sink and Ledger.Totals in its ` +
            `context (PgLedger.layer provides both); it has ${sink === undefined ? "no Ledger.Sink" : "no Ledger.Totals"}`
        })
      }
      return yield* RedisStore.make({
        prefix,
        leaseMillis,
        timeoutMillis,
        onStateLost,
        idTtlMillis,
        sink,
        totals: onStateLost === "restore" ? totals : undefined
      })
    })
  })

/**
 * Makes the budget of that name kept in Redis, for as long as the scope
 * lasts: every process that makes it with the same prefix shares it.
 *
 * @since 0.2.0
 * @category constructors
 */
export const make = (
  options: BudgetOptions,
  storeOptions: StoreOptions = {}
): Effect.Effect<BudgetService, InvalidUsage | BudgetUnavailable, Redis.Redis | Scope.Scope> =>
  Budget.makeFromStore(options).pipe(Effect.provideServiceEffect(BudgetStore, makeStore(storeOptions)))

/**
 * A Redis `BudgetStore`, for `Budget.layerFromStore` and for every child
 * and root budget opened on it.
 *
 * @example
 * ```ts
 * import { Budget } from "effect-token-budget"
 * import { RedisBudget } from "effect-token-budget/redis"
 * import { NodeRedis } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const Store = RedisBudget.layerStore({ prefix: "llm:" }).pipe(
 *   Layer.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379" }))
 * )
 * const Org = Budget.layerFromStore({ name: "org", usdCap: 100 }).pipe(Layer.provide(Store))
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerStore = (options: StoreOptions = {}): Layer.Layer<BudgetStore, InvalidUsage, Redis.Redis> =>
  Layer.effect(BudgetStore, makeStore(options))

/**
 * A budget kept in Redis, shared by every process that opens the same name
 * with the same prefix.
 *
 * @example
 * ```ts
 * import { RedisBudget } from "effect-token-budget/redis"
 * import { NodeRedis } from "@effect/platform-node"
 * import { Layer } from "effect"
 *
 * const Shared = RedisBudget.layer({ name: "org", usdCap: 100 }).pipe(
 *   Layer.provide(NodeRedis.layer({ url: "redis://127.0.0.1:6379" }))
 * )
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (
  options: BudgetOptions,
  storeOptions: StoreOptions = {}
): Layer.Layer<Budget, InvalidUsage | BudgetUnavailable, Redis.Redis> =>
  Budget.layerFromStore(options).pipe(Layer.provide(layerStore(storeOptions)))

const durationKey = (key: string, examples: string, unset: string): Key<Duration.Duration> => ({
  key,
  rule: `must be a positive, finite Duration, such as ${examples}`,
  unset,
  parse: (input) => {
    const duration = parseDuration(input)
    return duration !== undefined && !(millisOf(key, duration) instanceof InvalidUsage) ? duration : undefined
  }
})

// The store's options from the `ConfigProvider` in context, each optional;
// a key set but empty or not valid fails with `InvalidUsage` naming it.
const storeOptionsFromConfig: Effect.Effect<StoreOptions, InvalidUsage | Config.ConfigError> = Effect.all({
  prefix: read({
    key: "BUDGET_REDIS_PREFIX",
    rule: "must be a key prefix without \"{\" or \"}\", such as llm:",
    unset: "\"budget:\"",
    parse: (input) => /[{}]/.test(input) ? undefined : input
  }),
  leaseTtl: read(durationKey("BUDGET_REDIS_LEASE_TTL", "\"30 seconds\" or \"2 minutes\"", "30 seconds")),
  timeout: read(durationKey("BUDGET_REDIS_TIMEOUT", "\"5 seconds\" or \"500 millis\"", "5 seconds")),
  onStateLost: read<"fail" | "recreate" | "restore">({
    key: "BUDGET_REDIS_ON_STATE_LOST",
    rule: "must be \"fail\", \"recreate\" or \"restore\"",
    unset: "\"fail\"",
    parse: (input) => input === "fail" || input === "recreate" || input === "restore" ? input : undefined
  }),
  idTtl: read(durationKey("BUDGET_REDIS_ID_TTL", "\"1 day\" or \"6 hours\"", "1 day"))
})

/**
 * A budget kept in Redis whose options come from `Config`: by default the
 * budget's from `BUDGET_NAME`, `BUDGET_TOKEN_CAP` and `BUDGET_USD_CAP`, the
 * store's from `BUDGET_REDIS_PREFIX`, `BUDGET_REDIS_LEASE_TTL`,
 * `BUDGET_REDIS_TIMEOUT`, `BUDGET_REDIS_ON_STATE_LOST` and
 * `BUDGET_REDIS_ID_TTL`, each optional. As for `Budget.layerConfig`, a key
 * set but empty or not valid fails with `InvalidUsage` naming it, before
 * anything is sent to Redis. The connection comes from the `Redis` layer
 * you provide (`NodeRedis.layerConfig` reads it from `Config` too).
 *
 * @example
 * ```ts
 * import { RedisBudget } from "effect-token-budget/redis"
 * import { NodeRedis } from "@effect/platform-node"
 * import { Config, Layer } from "effect"
 *
 * const Shared = RedisBudget.layerConfig().pipe(
 *   Layer.provide(NodeRedis.layerConfig({ url: Config.String("REDIS_URL") }))
 * )
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  options?: Config.Wrap<BudgetOptions> | undefined,
  storeOptions?: Config.Wrap<StoreOptions> | undefined
): Layer.Layer<Budget, InvalidUsage | BudgetUnavailable | Config.ConfigError, Redis.Redis> =>
  Layer.unwrap(Effect.map(
    Effect.all([
      options === undefined ? optionsFromConfig : Config.unwrap(options),
      storeOptions === undefined ? storeOptionsFromConfig : Config.unwrap(storeOptions)
    ]),
    ([budget, store]) => layer(budget, store)
  ))
