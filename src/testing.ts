/**
 * The conformance suite for store authors: `effect-token-budget/testing`.
 * Loads vitest, `@effect/vitest` and fast-check; the main entry loads none
 * of them.
 *
 * @stability unstable
 * @since 0.2.0
 */
export * as BudgetStoreContract from "./BudgetStoreContract.ts"
export type { PropertyOptions, StoreUnderTest } from "./BudgetStoreContract.ts"
