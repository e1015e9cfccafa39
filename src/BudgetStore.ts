/**
 * The seam between the `Budget` service and where budgets are kept: what a
 * store must do, the in-memory store, and what a new store builds on. The
 * `Budget` service owns validation, dollars, reservations and settlements;
 * a store only checks limits and applies changes atomically, in whole
 * tokens and nano-dollars. A new store passes the contract suite of
 * `effect-token-budget/testing`.
 *
 * @stability unstable
 * @since 0.2.0
 */
import { Context, Layer } from "effect"
import type { Cron, Effect, Scope, Stream } from "effect"
import type { Settlement } from "./Budget.ts"
import type { BudgetExceeded, BudgetUnavailable, InvalidUsage, Limit, LimitAxis } from "./BudgetError.ts"
import type { RateSetting } from "./internal/rate.ts"
import type { BudgetEvent } from "./BudgetEvent.ts"
import type { Labels } from "./Ledger.ts"
import * as MemoryStore from "./internal/memory/store.ts"
import { exceeded as exceededOf } from "./internal/refusal.ts"
import { committed as committedOf, Hold as HoldClass, released as releasedSettlement } from "./internal/reservation.ts"

/**
 * A budget's options, validated, in the units stores count in: tokens and
 * whole nano-dollars, `Infinity` for an axis without a cap.
 *
 * @stability unstable
 * @since 0.2.0
 * @category models
 */
export interface Settings {
  readonly name: string
  readonly tokenCap: number
  readonly nanoCap: number
  /** The window's length in milliseconds, or its cron schedule. */
  readonly window: number | Cron.Cron | undefined
  /** Fractions of a cap, ascending, each in (0, 1]. */
  readonly thresholds: ReadonlyArray<number>
  readonly metrics: boolean
  /** How long an unused child may sit idle before a store in memory drops it; `Infinity` for never. */
  readonly idleTtlMillis: number
  /** Its rate, a bucket per axis given; none if empty. */
  readonly rates: ReadonlyArray<RateSetting>
  /** The most holds in flight at once at it and below; `Infinity` for no limit. */
  readonly maxConcurrent: number
}

/**
 * A budget's counters as a store keeps them, dollars in nano-dollars.
 *
 * @stability unstable
 * @since 0.2.0
 * @category models
 */
export interface Counters {
  readonly tokensUsed: number
  readonly nanosUsed: number
  readonly tokensReserved: number
  readonly nanosReserved: number
  readonly tokenCap: number
  readonly nanoCap: number
  /** When the current window ends, in epoch milliseconds; undefined without a window. */
  readonly windowEndsAt: number | undefined
  /** Each axis of its rate, its bucket's level now and its capacity, in the store's units; none without a rate. */
  readonly rates?: ReadonlyArray<{ readonly axis: LimitAxis; readonly level: number; readonly capacity: number }> | undefined
  /** Its `maxConcurrent`; `Infinity` (or left out) without one. */
  readonly maxConcurrent?: number | undefined
  /** Holds in flight at it and below, if the store counts them. */
  readonly inFlight?: number | undefined
}

/**
 * What a commit charges: `estimated` when the caller gave no actual usage,
 * so the amounts held are charged.
 *
 * @stability unstable
 * @since 0.2.0
 * @category models
 */
export interface Charge {
  readonly tokens: number
  readonly nanos: number
  readonly estimated: boolean
}

/**
 * A hold as a store keeps it, and the `Reservation` its caller gets: a
 * store's hold class extends it and implements `settle` and `close`; this
 * validates a commit's actual and fills in the axes left out. Stores build
 * settlements with `committed` and `released`, so dollars are converted in
 * one place.
 *
 * @stability unstable
 * @since 0.2.0
 * @category models
 */
export const Hold: typeof HoldClass = HoldClass

/**
 * A hold as a store keeps it.
 *
 * @stability unstable
 * @since 0.2.0
 * @category models
 */
export type Hold = HoldClass

/**
 * The settlement of a commit, in a store's units: tokens and nano-dollars
 * charged, and the part of each that went past a cap.
 *
 * @stability unstable
 * @since 0.2.0
 * @category constructors
 */
export const committed: typeof committedOf = committedOf

/**
 * The settlement of a release: nothing charged.
 *
 * @stability unstable
 * @since 0.2.0
 * @category constructors
 */
export const released: Settlement = releasedSettlement

/**
 * One budget of a tree, as a store keeps it. A charge applies to the budget
 * and every ancestor in one atomic step, or to none.
 *
 * A store's `reserve` runs inside `acquireRelease`'s uninterruptible
 * acquire: it may make only its waiting interruptible, so a hold it takes
 * always reaches the caller, who registers its release.
 *
 * `id` is the caller's idempotency key, if it gave one, scoped to the
 * budget by the service (unique across the tree: one id on two budgets is
 * two keys). A `record` whose id was seen
 * succeeds without charging; a `reserve` whose id names a hold still held,
 * or committed, answers that hold (the same settlement once settled), and
 * one whose hold was released takes a new one. Ids are kept for a day.
 *
 * @stability unstable
 * @since 0.2.0
 * @category models
 */
export interface StoreBudget {
  /** Where the budget sits in its tree: `root/tenant-a/agent-7`. */
  readonly path: string
  readonly record: (
    tokens: number,
    nanos: number,
    id: string | undefined,
    labels: Labels | undefined
  ) => Effect.Effect<void, BudgetExceeded | BudgetUnavailable>
  readonly reserve: (
    tokens: number,
    nanos: number,
    wait: boolean,
    id: string | undefined,
    labels: Labels | undefined
  ) => Effect.Effect<Hold, BudgetExceeded | BudgetUnavailable>
  readonly snapshot: Effect.Effect<Counters, BudgetUnavailable>
  /** The counters of each child the store keeps, with its name. */
  readonly children: Effect.Effect<ReadonlyArray<readonly [name: string, counters: Counters]>, BudgetUnavailable>
  readonly reset: Effect.Effect<void, BudgetUnavailable>
  /** The child of that name, made or met again with these settings, kept while the scope lasts. */
  readonly child: (settings: Settings) => Effect.Effect<StoreBudget, InvalidUsage | BudgetUnavailable, Scope.Scope>
  /** Events of this budget and every budget below it. */
  readonly events: Stream.Stream<BudgetEvent>
}

/**
 * Where budgets are kept. `open` reaches the root budget of that name, made
 * or met again with these settings, for as long as the scope lasts.
 *
 * @example
 * ```ts
 * import { Budget, BudgetStore } from "effect-token-budget"
 * import { Layer } from "effect"
 *
 * // what `Budget.layer` does: a budget over the in-memory store
 * const BudgetLive = Budget.layerFromStore({ usdCap: 10 }).pipe(Layer.provide(BudgetStore.layerMemory))
 * ```
 *
 * @stability unstable
 * @since 0.2.0
 * @category services
 */
export class BudgetStore extends Context.Service<BudgetStore, {
  readonly open: (settings: Settings) => Effect.Effect<StoreBudget, InvalidUsage | BudgetUnavailable, Scope.Scope>
}>()("effect-token-budget/BudgetStore") {}

/**
 * Budgets in this process's memory: every operation one synchronous step.
 * Roots of the same name share their counters for as long as the layer
 * lasts.
 *
 * @stability unstable
 * @since 0.2.0
 * @category layers
 */
export const layerMemory: Layer.Layer<BudgetStore> = Layer.effect(BudgetStore, MemoryStore.make)

/**
 * A refusal, in a store's units (tokens, or nano-dollars on the `usd`
 * axis), as the `BudgetExceeded` the caller sees: every store refuses
 * through this.
 *
 * @stability unstable
 * @since 0.2.0
 * @category constructors
 */
export const exceeded: (refusal: Refusal) => BudgetExceeded = exceededOf

/**
 * A refusal in a store's units: tokens, or nano-dollars on the `usd` axis.
 *
 * @stability unstable
 * @since 0.2.0
 * @category models
 */
export interface Refusal {
  /** The path of the budget that refused. */
  readonly budget: string
  /** Which of its limits refused; its cap if left out. */
  readonly limit?: Limit | undefined
  readonly axis: LimitAxis
  readonly requested: number
  /** Used + reserved + requested; for a rate, what its bucket lent plus requested. */
  readonly attempted: number
  readonly cap: number
  /** For a rate: how long until its bucket will have refilled enough. */
  readonly retryAfterMillis?: number | undefined
}
