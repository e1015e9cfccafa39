/**
 * The ledger in PostgreSQL: `effect-token-budget/sql-pg`.
 *
 * @since 0.3.0
 */
export * as PgLedger from "./PgLedger.ts"
export type { GroupBy, SpendQuery, SpendRow } from "./PgLedger.ts"
