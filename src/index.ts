/**
 * A shared token + USD budget for concurrent LLM work, as an Effect service.
 *
 * @since 0.1.0
 */
export { Budget } from "./Budget.ts"
export * as BudgetedLanguageModel from "./BudgetedLanguageModel.ts"
export type { BudgetOptions, BudgetService, RedisBudgetOptions, Reservation, ReserveOptions, Settlement, Snapshot, Window } from "./Budget.ts"
export * from "./BudgetEvent.ts"
export { Axis, BudgetExceeded, BudgetUnavailable, InvalidUsage } from "./BudgetError.ts"
export { maxUsd, nanosPerUsd, usdFromNanos, usdToNanos } from "./Usage.ts"
export type { Usage } from "./Usage.ts"
