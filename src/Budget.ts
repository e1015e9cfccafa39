/**
 * The `Budget` service: one token + USD budget shared by every fiber that
 * has it, its layers, and the reservations it hands out.
 *
 * @since 0.1.0
 */
import { Config, Context, Effect, Layer, Schema } from "effect"
import type { Cron, Duration, Scope, Stream } from "effect"
import type { BudgetExceeded, BudgetUnavailable } from "./BudgetError.ts"
import { InvalidUsage, LimitAxis } from "./BudgetError.ts"
import type { BudgetEvent } from "./BudgetEvent.ts"
import type { Labels } from "./Ledger.ts"
import { BudgetStore } from "./BudgetStore.ts"
import * as MemoryStore from "./internal/memory/store.ts"
import { optionsFromConfig, settingsOf } from "./internal/options.ts"
import { serviceOf } from "./internal/service.ts"
import type { Usage } from "./Usage.ts"

/**
 * How a settled reservation ended, as a Schema. `Committed` charged
 * `tokens` and `usd`; the overage fields tell how much of that charge went
 * past a cap (charged anyway: usage that happened is never dropped).
 * `Released` charged nothing.
 *
 * @example
 * ```ts
 * import { Budget } from "effect-token-budget"
 * import { Effect } from "effect"
 *
 * const call = Effect.scoped(Effect.gen(function*() {
 *   const budget = yield* Budget
 *   const hold = yield* budget.reserve({ tokens: 1000 })
 *   // the provider used more than was held: charged anyway, overage reported
 *   const settlement = yield* hold.commit({ tokens: 1400 })
 *   if (settlement.tokensOverage > 0) {
 *     yield* Effect.logWarning(`${settlement.tokensOverage} tokens charged past the cap`)
 *   }
 * }))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export const Settlement = Schema.Union([
  Schema.TaggedStruct("Committed", {
    tokens: Schema.Number,
    usd: Schema.Number,
    tokensOverage: Schema.Number,
    usdOverage: Schema.Number
  }),
  Schema.TaggedStruct("Released", {
    tokens: Schema.Number,
    usd: Schema.Number,
    tokensOverage: Schema.Number,
    usdOverage: Schema.Number
  })
])

/**
 * How a settled reservation ended: `Committed` or `Released` (whose figures
 * are all 0).
 *
 * @since 0.1.0
 * @category models
 */
export type Settlement = typeof Settlement.Type

/**
 * A hold on part of a budget, taken before an LLM call and settled after it.
 * The first settlement wins: a later `commit` or `release` charges nothing
 * and returns it.
 *
 * @example
 * ```ts
 * import { Budget } from "effect-token-budget"
 * import { Effect } from "effect"
 *
 * // your LLM client: declared here, not implemented
 * declare const callLlm: (prompt: string) => Effect.Effect<{ readonly text: string; readonly tokens: number }>
 *
 * // one call, one scope: if the call fails or is interrupted before the
 * // commit, closing the scope releases the hold
 * const answer = (prompt: string) =>
 *   Effect.scoped(Effect.gen(function*() {
 *     const budget = yield* Budget
 *     const hold = yield* budget.reserve({ tokens: 2000, usd: 0.012 })
 *     const result = yield* callLlm(prompt)
 *     yield* hold.commit({ tokens: result.tokens }) // usd left out: charges the 0.012 held
 *     return result.text
 *   }))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Reservation {
  /** Tokens held. */
  readonly tokens: number
  /** Dollars held. */
  readonly usd: number
  /** The labels it was reserved with (none: an empty object). */
  readonly labels: Labels
  /**
   * Releases the hold and charges the actual usage; an axis left out charges
   * the amount held. Never refused: an actual beyond the hold is charged
   * even past a cap, and reported as overage.
   */
  readonly commit: (actual?: Usage) => Effect.Effect<Settlement, InvalidUsage | BudgetUnavailable>
  /** Gives the hold back without charging anything. */
  readonly release: Effect.Effect<Settlement, BudgetUnavailable>
}

/**
 * A budget's counters at one moment, as a Schema. An unbounded axis has an
 * `Infinity` cap and remaining; remaining never reads below 0. A budget's
 * counters include everything charged to the budgets below it.
 *
 * @since 0.1.0
 * @category models
 */
export const Snapshot = Schema.Struct({
  name: Schema.String,
  /** The budget's place in its tree: `org/tenant-a/agent-7`. */
  path: Schema.String,
  tokensUsed: Schema.Number,
  usdUsed: Schema.Number,
  tokensReserved: Schema.Number,
  usdReserved: Schema.Number,
  tokenCap: Schema.Number,
  usdCap: Schema.Number,
  tokensRemaining: Schema.Number,
  usdRemaining: Schema.Number,
  /** When the current window ends, in epoch milliseconds; undefined without a window. */
  windowEndsAt: Schema.UndefinedOr(Schema.Number),
  /**
   * Each axis of its rate: what its bucket holds now (below 0: debt taken
   * by commits past their holds) and the most it holds; empty without a rate.
   */
  rates: Schema.Array(Schema.Struct({ axis: LimitAxis, available: Schema.Number, capacity: Schema.Number })),
  /** Its `maxConcurrent`, `Infinity` without one. */
  maxConcurrent: Schema.Number,
  /** Holds in flight at it and below; undefined where its store does not count them (both built-in stores do). */
  inFlight: Schema.UndefinedOr(Schema.Number)
})

/**
 * A budget's counters at one moment.
 *
 * @since 0.1.0
 * @category models
 */
export type Snapshot = typeof Snapshot.Type

/**
 * What `reserve` does when the hold does not fit: fail at once with
 * `BudgetExceeded` (the default), or wait in line until it fits, first come
 * first served among waiters (a request that does not wait takes free room
 * ahead of the line). A request larger than a cap fails at once either way.
 *
 * @example
 * ```ts
 * import { Budget } from "effect-token-budget"
 * import { Effect } from "effect"
 *
 * const patient = Effect.scoped(Effect.gen(function*() {
 *   const budget = yield* Budget
 *   // wait for room, but not for ever: a waiter that gives up holds nothing
 *   const hold = yield* budget.reserve({ tokens: 8000 }, { onExceeded: "wait" }).pipe(
 *     Effect.timeout("30 seconds")
 *   )
 *   yield* hold.commit({ tokens: 6400 })
 * }))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface ReserveOptions extends ChargeOptions {
  readonly onExceeded?: "fail" | "wait" | undefined
}

/**
 * Options of one charge. `labels` attribute it (model, provider, user,
 * feature, request id...): they are carried on its hold, its events and its
 * ledger entry (see `Ledger`); at most 64, names of 1 to 128 characters,
 * values strings of at most 1,024.
 *
 * `id` is an idempotency key: a `record` or `reserve` retried with the same `id`
 * (after a `BudgetUnavailable` whose reply was lost, or a message
 * delivered twice) charges once, on every store. A `record` whose id was
 * seen succeeds without charging again. A `reserve` whose id names a hold
 * still held, or committed, gets that hold back (its commit answers the
 * first settlement); one released, or never taken, takes a new hold under
 * the id. Ids are kept for a day (`idTtl` on Redis), each for its budget
 * (one id on two budgets names two charges): use ids unique to the charge
 * (a request id, a message id). At most 256 characters.
 *
 * @example
 * ```ts
 * import { Budget } from "effect-token-budget"
 * import { Effect, Schedule } from "effect"
 *
 * const charge = (requestId: string, tokens: number) =>
 *   Effect.gen(function*() {
 *     const budget = yield* Budget
 *     // retried after a lost reply, it still charges once
 *     yield* budget.record({ tokens }, { id: requestId }).pipe(
 *       Effect.retry({ while: (e) => e._tag === "BudgetUnavailable", schedule: Schedule.exponential("100 millis"), times: 5 })
 *     )
 *   })
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export interface ChargeOptions {
  readonly id?: string | undefined
  readonly labels?: Labels | undefined
}

/**
 * How often a budget starts afresh: every `Duration` (aligned to the Unix
 * epoch, so `"1 day"` ends at midnight UTC), or whenever a `Cron` schedule
 * fires.
 *
 * @example
 * ```ts
 * import type { Window } from "effect-token-budget"
 * import { Cron, Result } from "effect"
 *
 * const daily: Window = "1 day"
 * const monthly: Window = Result.getOrThrow(Cron.parse("0 0 1 * *", "UTC"))
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type Window = Duration.Input | Cron.Cron

/**
 * A budget's name, caps, window, alert thresholds and metrics. A cap left
 * out leaves its axis unbounded.
 *
 * @since 0.1.0
 * @category models
 */
export interface BudgetOptions {
  /** Names the budget in paths, errors and snapshots; a root defaults to `"budget"`. */
  readonly name?: string | undefined
  readonly tokenCap?: number | undefined
  readonly usdCap?: number | undefined
  /**
   * Start afresh every `Duration` (aligned to the Unix epoch: `"1 day"` ends
   * at midnight UTC) or whenever a `Cron` schedule fires. Driven by `Clock`.
   */
  readonly window?: Window | undefined
  /**
   * Fractions of a cap whose crossing by spending is an event, once per
   * window each; defaults to `[0.5, 0.8, 0.95]`.
   */
  readonly thresholds?: ReadonlyArray<number> | undefined
  /** Whether to report the budget's `Metric`s; defaults to `true`. */
  readonly metrics?: boolean | undefined
  /**
   * How long a child in memory may sit idle (no scope using it, nothing
   * held, no waiters, no children) before it is dropped, forgetting what it
   * used (its ancestors keep it); defaults to `"1 hour"`, `Infinity` never.
   * An empty child goes at once. See docs/nesting.md for the trade-off.
   */
  readonly idleTtl?: Duration.Input | undefined
  /**
   * A rate on any of three axes, each a token bucket refilled continuously:
   * `{ tokens: 90_000, requests: 500, per: "1 minute" }` admits 90,000 tokens
   * and 500 requests a minute (every `record` and `reserve` is one request).
   * Checked with the caps, at every level, in the same atomic step; a
   * refusal carries `retryAfter`. See docs/rate-limits.md.
   */
  readonly rate?: RateOptions | undefined
  /** The most holds in flight at once at this budget and below; no limit if left out. */
  readonly maxConcurrent?: number | undefined
}

/**
 * A budget's rate: what it admits per period on each axis given (at least
 * one), as token buckets that refill continuously and hold one period's
 * worth, or `burst` periods' worth.
 *
 * @since 0.3.0
 * @category models
 */
export interface RateOptions {
  /** Tokens admitted per period: reserved, or recorded. */
  readonly tokens?: number | undefined
  /** Requests admitted per period: every `record` and `reserve` is one. */
  readonly requests?: number | undefined
  /** Dollars admitted per period. */
  readonly usd?: number | undefined
  readonly per: Duration.Input
  /** How many periods' worth a bucket holds when full; 1 if left out. */
  readonly burst?: number | undefined
}

/**
 * What a budget can do, whichever store keeps it: the shape of the `Budget`
 * service.
 *
 * @since 0.1.0
 * @category models
 */
export interface BudgetService {
  readonly name: string
  /** The budget's place in its tree: `org/tenant-a/agent-7`. */
  readonly path: string
  /** Charges usage that already happened, or fails with `BudgetExceeded`; with an `id`, once however often it is retried. */
  readonly record: (
    usage: Usage,
    options?: ChargeOptions
  ) => Effect.Effect<void, BudgetExceeded | InvalidUsage | BudgetUnavailable>
  /** Holds `usage` until the scope closes; a hold not committed by then is released. */
  readonly reserve: (
    usage: Usage,
    options?: ReserveOptions
  ) => Effect.Effect<Reservation, BudgetExceeded | InvalidUsage | BudgetUnavailable, Scope.Scope>
  /** Holds `usage` while `use` runs, then releases whatever `use` left unsettled. */
  readonly withReservation: <A, E, R>(
    usage: Usage,
    use: (reservation: Reservation) => Effect.Effect<A, E, R>,
    options?: ReserveOptions
  ) => Effect.Effect<A, E | BudgetExceeded | InvalidUsage | BudgetUnavailable, R>
  readonly snapshot: Effect.Effect<Snapshot, BudgetUnavailable>
  /**
   * A snapshot of each child of this budget (the tenants view), by name. A
   * child is listed while the store keeps it: in memory while a scope uses
   * it or it holds usage (see `idleTtl`); on Redis once opened, whatever
   * process opened it, unless Redis lost its state.
   */
  readonly children: Effect.Effect<ReadonlyArray<Snapshot>, BudgetUnavailable>
  /** Zeroes used and reserved; holds taken before are stale. Its ancestors keep what they counted. */
  readonly reset: Effect.Effect<void, BudgetUnavailable>
  /**
   * The child budget of that name, kept while the scope lasts: every charge
   * to it also counts against this budget and its ancestors. The same name
   * reaches the same counters, with the options given last.
   */
  readonly child: (
    name: string,
    options?: Omit<BudgetOptions, "name">
  ) => Effect.Effect<BudgetService, InvalidUsage | BudgetUnavailable, Scope.Scope>
  /** What happens to this budget and every budget below it, from the moment of subscribing. */
  readonly events: Stream.Stream<BudgetEvent>
}

/**
 * A shared token + USD budget. Every operation checks and applies atomically;
 * the fleet never spends past a cap.
 *
 * @example
 * ```ts
 * import { Budget } from "effect-token-budget"
 * import { Effect } from "effect"
 *
 * const program = Effect.gen(function*() {
 *   const budget = yield* Budget
 *   yield* budget.record({ tokens: 1200, usd: 0.0036 })
 *   return yield* budget.snapshot
 * }).pipe(Effect.provide(Budget.layer({ tokenCap: 1_000_000, usdCap: 10 })))
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class Budget extends Context.Service<Budget, BudgetService>()("effect-token-budget/Budget") {
  /**
   * Makes an in-memory budget, shared by whoever holds the returned service,
   * for as long as the scope lasts: for a budget made at run time (one per
   * request, per job, per test) rather than one per layer.
   *
   * @example
   * ```ts
   * import { Budget } from "effect-token-budget"
   * import { Effect } from "effect"
   *
   * // a budget of its own for one batch job
   * const job = Effect.scoped(Effect.gen(function*() {
   *   const budget = yield* Budget.make({ name: "nightly-eval", usdCap: 2 })
   *   yield* budget.record({ tokens: 1200, usd: 0.0036 })
   *   return yield* budget.snapshot
   * }))
   * ```
   *
   * @since 0.1.0
   * @category constructors
   */
  static make(options: BudgetOptions): Effect.Effect<BudgetService, InvalidUsage, Scope.Scope> {
    return Budget.makeFromStore(options).pipe(
      Effect.provideServiceEffect(BudgetStore, MemoryStore.make),
      // the memory store is never unavailable
      Effect.catchTag("BudgetUnavailable", Effect.die)
    )
  }

  /**
   * Makes the budget of that name in the `BudgetStore` in context (the root
   * of its tree), for as long as the scope lasts. Every process that opens
   * the same name in a shared store shares its counters.
   *
   * @since 0.2.0
   * @category constructors
   */
  static makeFromStore(
    options: BudgetOptions
  ): Effect.Effect<BudgetService, InvalidUsage | BudgetUnavailable, BudgetStore | Scope.Scope> {
    return Effect.suspend(() => {
      const settings = settingsOf(options, "budget")
      if (settings instanceof InvalidUsage) return Effect.fail(settings)
      return Effect.flatMap(BudgetStore, (store) => Effect.map(store.open(settings), serviceOf))
    })
  }

  /**
   * A budget kept in the `BudgetStore` the layer is given: the same
   * service whichever store keeps it. `effect-token-budget/redis` provides
   * a Redis store.
   *
   * @example
   * ```ts
   * import { Budget, BudgetStore } from "effect-token-budget"
   * import { Layer } from "effect"
   *
   * const BudgetLive = Budget.layerFromStore({ name: "evals", usdCap: 10 }).pipe(
   *   Layer.provide(BudgetStore.layerMemory)
   * )
   * ```
   *
   * @since 0.2.0
   * @category layers
   */
  static layerFromStore(
    options: BudgetOptions
  ): Layer.Layer<Budget, InvalidUsage | BudgetUnavailable, BudgetStore> {
    return Layer.effect(Budget, Budget.makeFromStore(options))
  }

  /**
   * An in-memory budget for this process, shared by every fiber the layer
   * is provided to. Fails with `InvalidUsage` when a cap is not a usable
   * number.
   *
   * @example
   * ```ts
   * import { Budget } from "effect-token-budget"
   * import { Effect } from "effect"
   *
   * const BudgetLive = Budget.layer({ name: "evals", tokenCap: 1_000_000, usdCap: 10 })
   *
   * const program = Effect.gen(function*() {
   *   const budget = yield* Budget
   *   yield* budget.record({ tokens: 1200, usd: 0.0036 })
   * }).pipe(Effect.provide(BudgetLive))
   * ```
   *
   * @since 0.1.0
   * @category layers
   */
  static layer(options: BudgetOptions): Layer.Layer<Budget, InvalidUsage> {
    return Layer.effect(Budget, Budget.make(options))
  }

  /**
   * An in-memory budget whose name and caps come from `Config`. By default
   * they are read from `BUDGET_NAME`, `BUDGET_TOKEN_CAP` and
   * `BUDGET_USD_CAP` of the `ConfigProvider` in context, each optional: a
   * cap whose key is left out is no cap, with neither set the budget has
   * none. A key set but empty (`BUDGET_USD_CAP=`), or set to a value that is
   * not valid (`10_000`, `-1`, `Infinity`), fails with `InvalidUsage` naming
   * the key, the value and a valid example; it is never read as left out.
   * Configs of your own (`config`) are read as they are written: a bad cap
   * fails with `InvalidUsage`, a missing or unparsable one as the `Config`
   * says (`Config.Number` fails with `ConfigError`).
   *
   * @example
   * ```ts
   * import { Budget } from "effect-token-budget"
   * import { Config } from "effect"
   *
   * // from the environment: BUDGET_TOKEN_CAP=1000000 BUDGET_USD_CAP=10
   * const FromEnv = Budget.layerConfig()
   *
   * // or from keys of your own
   * const Custom = Budget.layerConfig({
   *   name: Config.succeed("evals"),
   *   usdCap: Config.Number("EVALS_USD_CAP")
   * })
   * ```
   *
   * @since 0.1.0
   * @category layers
   */
  static layerConfig(
    config?: Config.Wrap<BudgetOptions> | undefined
  ): Layer.Layer<Budget, InvalidUsage | Config.ConfigError> {
    return Layer.effect(
      Budget,
      Effect.flatMap(config === undefined ? optionsFromConfig : Config.unwrap(config), Budget.make)
    )
  }

  /**
   * A child of the `Budget` in context: every charge to it also counts
   * against its parent and the parent's ancestors, at once or not at all. A
   * refusal names the budget that refused. The same name under the same
   * parent reaches the same counters, so per-tenant and per-agent budgets
   * outlive any one request.
   *
   * @example
   * ```ts
   * import { Budget } from "effect-token-budget"
   * import { Layer } from "effect"
   *
   * const Org = Budget.layer({ name: "org", usdCap: 1000, window: "30 days" })
   * const TenantA = Budget.layerChild("tenant-a", { usdCap: 50, window: "1 day" }).pipe(Layer.provide(Org))
   * ```
   *
   * @since 0.1.0
   * @category layers
   */
  static layerChild(
    name: string,
    options: Omit<BudgetOptions, "name"> = {}
  ): Layer.Layer<Budget, InvalidUsage | BudgetUnavailable, Budget> {
    return Layer.effect(Budget, Effect.flatMap(Budget, (parent) => parent.child(name, options)))
  }
}

