/**
 * Budgets kept in Redis: `effect-token-budget/redis`.
 *
 * @since 0.2.0
 */
export * as RedisBudget from "./RedisBudget.ts"
export type { StoreOptions as RedisStoreOptions } from "./RedisBudget.ts"
export * as NodeRedisCluster from "./NodeRedisCluster.ts"
