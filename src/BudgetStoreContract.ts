/**
 * The conformance suite every `BudgetStore` passes, for store authors: the
 * contract (DESIGN semantics 1-8, events, metrics, interruption at every
 * step) and model-based property tests, each one function over a way to
 * make budgets on the store under test, called in a vitest file. This
 * package runs the same suite on its memory and Redis stores.
 *
 * Needs `@effect/vitest` (with the `vitest` it runs on) and `fast-check`:
 * optional peer dependencies, loaded by `effect-token-budget/testing` and
 * never by the main entry.
 *
 * @example
 * ```ts
 * // test/myStore.test.ts
 * import { BudgetStore } from "effect-token-budget"
 * import { BudgetStoreContract } from "effect-token-budget/testing"
 *
 * // your store's layer: here the memory store stands in for it
 * const store = {
 *   name: "my store",
 *   make: BudgetStoreContract.makeFromStore(BudgetStore.layerMemory)
 * }
 *
 * BudgetStoreContract.contract(store)
 * BudgetStoreContract.contract(BudgetStoreContract.grandchild(store))
 * BudgetStoreContract.properties(store)
 * BudgetStoreContract.treeProperties(store)
 * ```
 *
 * @stability unstable
 * @since 0.2.0
 */
import { Context, Effect, Layer } from "effect"
import type { Scope } from "effect"
import { Budget } from "./Budget.ts"
import type { BudgetOptions, BudgetService } from "./Budget.ts"
import type { BudgetUnavailable, InvalidUsage } from "./BudgetError.ts"
import { BudgetStore } from "./BudgetStore.ts"
import { contract as contractOf, yields as yieldsOf } from "./internal/testing/contract.ts"
import { properties as propertiesOf, treeProperties as treePropertiesOf } from "./internal/testing/properties.ts"

/**
 * A store under test: its name in the suite's titles, a way to make a
 * fresh, empty budget on it, and how long its round trips take to land.
 * The defaults suit a store in memory; a remote store sets `settle` and
 * lowers the counts.
 *
 * @stability unstable
 * @since 0.2.0
 * @category models
 */
export interface StoreUnderTest {
  /** Names the store in the suite's titles: `contract on ${name}`. */
  readonly name: string
  /**
   * A fresh, empty budget with these options, kept while the scope lasts; a
   * remote store scopes its connection and keys (a prefix of their own).
   */
  readonly make: (options: BudgetOptions) => Effect.Effect<BudgetService, unknown, Scope.Scope>
  /**
   * Lets every fiber that can move do so; a remote store also waits for its
   * replies and messages to land. Defaults to `yields`.
   */
  readonly settle?: Effect.Effect<void> | undefined
  /** How many waiters to drain one at a time; each is a round trip on a remote store. Defaults to 10,000. */
  readonly drainWaiters?: number | undefined
  /** How many small charges must add up to exactly 1 USD; each is a round trip on a remote store. Defaults to 1,000,000. */
  readonly smallCharges?: number | undefined
}

/**
 * How many random programs a property test runs.
 *
 * @stability unstable
 * @since 0.2.0
 * @category models
 */
export interface PropertyOptions {
  /** Defaults to 150 for `properties` (a third of it for its many-fibers test) and 100 for `treeProperties`. */
  readonly numRuns?: number | undefined
  /**
   * Whether the store keeps rates and `maxConcurrent`, and on which clock:
   * `properties` then also runs programs on a budget with a rate of tokens
   * and requests and a most of holds in flight.
   *
   * - `"TestClock"`: the store's time is `Clock`; `TestClock` moves it, so
   *   the programs also let time pass and refill the buckets.
   * - `"store clock"`: the store keeps its own time (Redis's `TIME`), which
   *   no test can move: the rate is so slow that less than a token comes
   *   back during a run, so the buckets fill only by what holds give back.
   */
  readonly limits?: "TestClock" | "store clock" | undefined
}

/**
 * The contract, as a vitest `describe` block: never past a cap, scoped
 * holds, truthful commits, settling once, reset, exact money, bad input,
 * waiting first come first served, events, metrics, and interruption after
 * any number of scheduler turns.
 *
 * @stability unstable
 * @since 0.2.0
 * @category constructors
 */
export const contract: (store: StoreUnderTest) => void = contractOf

/**
 * Property tests of one budget, as a vitest `describe` block: random
 * programs of record, reserve, commit, release, scope closing, interruption
 * and reset, compared step by step with a reference model, and many fibers
 * at once never past a cap, holding nothing at the end, with exact sums.
 *
 * @stability unstable
 * @since 0.2.0
 * @category constructors
 */
export const properties: (store: StoreUnderTest, options?: PropertyOptions) => void = propertiesOf

/**
 * Property tests of a tree of four budgets with caps at three levels, as a
 * vitest `describe` block: every charge counts at each level of its chain,
 * every level stays within its cap, and no waiter is forgotten.
 *
 * @stability unstable
 * @since 0.2.0
 * @category constructors
 */
export const treeProperties: (store: StoreUnderTest, options?: PropertyOptions) => void = treePropertiesOf

/**
 * Lets forked fibers run until they block, a few scheduler turns: the
 * default `settle`, and the start of a remote store's own.
 *
 * @stability unstable
 * @since 0.2.0
 * @category combinators
 */
export const yields: Effect.Effect<void> = yieldsOf

/**
 * A `make` for `StoreUnderTest`: each budget is the root of a new store,
 * built from `store` (a layer, built afresh, or a scoped effect) in the
 * caller's scope, through `Budget.makeFromStore`. The store lives as long
 * as the budget.
 *
 * @example
 * ```ts
 * import { BudgetStore } from "effect-token-budget"
 * import { BudgetStoreContract } from "effect-token-budget/testing"
 * import type { Effect, Scope } from "effect"
 *
 * // from a layer
 * const fromLayer = BudgetStoreContract.makeFromStore(BudgetStore.layerMemory)
 *
 * // from a scoped effect, run once a budget: say, a connection and a key
 * // prefix of its own, closed when the budget's scope closes
 * declare const makeMyStore: Effect.Effect<BudgetStore.BudgetStore["Service"], never, Scope.Scope>
 * const fromEffect = BudgetStoreContract.makeFromStore(makeMyStore)
 * ```
 *
 * @stability unstable
 * @since 0.2.0
 * @category constructors
 */
export const makeFromStore = <E>(
  store: Layer.Layer<BudgetStore, E> | Effect.Effect<BudgetStore["Service"], E, Scope.Scope>
): (options: BudgetOptions) => Effect.Effect<BudgetService, E | InvalidUsage | BudgetUnavailable, Scope.Scope> => {
  const isLayer = (u: typeof store): u is Layer.Layer<BudgetStore, E> => Layer.isLayer(u)
  // Not Effect.provide(layer): that would close the store as soon as the
  // budget is made. Layer.fresh: a new store for each budget, even where a
  // layer of the same value was built before.
  const made = isLayer(store) ? Effect.map(Layer.build(Layer.fresh(store)), Context.get(BudgetStore)) : store
  return (options) => Budget.makeFromStore(options).pipe(Effect.provideServiceEffect(BudgetStore, made))
}

/**
 * The same store, each budget a grandchild (`org/tenant/<name>`) of a root
 * and a child without caps of their own: a child keeps the same contract,
 * its caps the ones that bind.
 *
 * @stability unstable
 * @since 0.2.0
 * @category combinators
 */
export const grandchild = (store: StoreUnderTest): StoreUnderTest => ({
  ...store,
  name: `a grandchild in ${store.name}`,
  make: ({ name, ...options }) =>
    store.make({ name: "org" }).pipe(
      Effect.flatMap((org) => org.child("tenant")),
      Effect.flatMap((tenant) => tenant.child(name ?? "agent", options))
    )
})
