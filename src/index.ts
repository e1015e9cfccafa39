/**
 * A shared token + USD budget for concurrent LLM work, as an Effect service.
 *
 * @since 0.1.0
 */
export { Budget } from "./Budget.ts"
export * as BudgetedLanguageModel from "./BudgetedLanguageModel.ts"
export { Settlement, Snapshot } from "./Budget.ts"
export type { BudgetOptions, BudgetService, ChargeOptions, Reservation, ReserveOptions, Window } from "./Budget.ts"
export * as BudgetStore from "./BudgetStore.ts"
export * from "./BudgetEvent.ts"
export { Axis, BudgetExceeded, BudgetUnavailable, BudgetStateLost, InvalidUsage, LedgerBacklogFull } from "./BudgetError.ts"
export * as Ledger from "./Ledger.ts"
export { LedgerUnavailable } from "./Ledger.ts"
export * as Pricing from "./Pricing.ts"
export * as TokenEstimate from "./TokenEstimate.ts"
export { maxUsd, nanosPerUsd, usdFromNanos, usdToNanos } from "./Usage.ts"
export type { Usage } from "./Usage.ts"
