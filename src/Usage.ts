/**
 * Amounts of work charged to a budget, their validation, and money kept as
 * exact integer nano-dollars.
 *
 * @since 0.1.0
 */
import { InvalidUsage } from "./BudgetError.ts"

/**
 * An amount of LLM work: tokens and US dollars. Either axis left out counts
 * as 0.
 *
 * @example
 * ```ts
 * import type { Usage } from "effect-token-budget"
 *
 * const call: Usage = { tokens: 1200, usd: 0.0036 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface Usage {
  readonly tokens?: number | undefined
  readonly usd?: number | undefined
}

/**
 * Nano-dollars in one US dollar: money is counted in whole nano-dollars, so
 * sums never drift the way float dollars do.
 *
 * @since 0.1.0
 * @category models
 */
export const nanosPerUsd = 1_000_000_000

/**
 * The largest dollar amount an input or a cap may be: 9,007,199 USD, the
 * whole dollars below the largest safe integer counted in nano-dollars.
 *
 * @since 0.1.0
 * @category models
 */
export const maxUsd = 9_007_199

/**
 * Dollars to whole nano-dollars, rounded to the nearest.
 *
 * @example
 * ```ts
 * import { usdToNanos } from "effect-token-budget"
 *
 * usdToNanos(0.0036) // 3_600_000
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const usdToNanos = (usd: number): number => Math.round(usd * nanosPerUsd)

/**
 * Whole nano-dollars to dollars: the double nearest the decimal amount, so
 * `usdFromNanos(9_996_400_000)` reads `9.9964`. Every nano-dollar reads back
 * distinctly up to $4,194,304 (2^22); above that a double is coarser than a
 * nano-dollar, though the counters behind it stay exact.
 *
 * @example
 * ```ts
 * import { usdFromNanos, usdToNanos } from "effect-token-budget"
 *
 * usdFromNanos(usdToNanos(0.1) + usdToNanos(0.2)) // 0.3, where 0.1 + 0.2 reads 0.30000000000000004
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const usdFromNanos = (nanos: number): number => nanos / nanosPerUsd


/**
 * Why `usage` is not a valid amount, or `undefined` when it is. Cheap enough
 * for the hot path: two comparisons per axis, no allocation on success.
 *
 * @internal
 */
export const usageError = (usage: Usage, where: string): InvalidUsage | undefined => {
  if (usage === null || typeof usage !== "object") {
    return new InvalidUsage({ field: where, value: usage, reason: "expected an object like { tokens, usd }" })
  }
  const tokens = usage.tokens
  if (tokens !== undefined && !(Number.isSafeInteger(tokens) && tokens >= 0)) {
    return new InvalidUsage({ field: `${where}.tokens`, value: tokens, reason: "must be a whole number from 0 to 9007199254740991" })
  }
  const usd = usage.usd
  if (usd !== undefined && !(typeof usd === "number" && usd >= 0 && usd <= maxUsd)) {
    return new InvalidUsage({ field: `${where}.usd`, value: usd, reason: `must be a number from 0 to ${maxUsd}` })
  }
  return undefined
}

/**
 * Why a cap is not valid, or `undefined` when it is. A missing or infinite
 * cap leaves its axis unbounded.
 *
 * @internal
 */
export const capError = (field: "tokenCap" | "usdCap", cap: number | undefined): InvalidUsage | undefined => {
  if (cap === undefined || cap === Infinity) return undefined
  const valid = field === "tokenCap"
    ? Number.isSafeInteger(cap) && cap >= 0
    : typeof cap === "number" && cap >= 0 && cap <= maxUsd
  if (valid) return undefined
  const rule = field === "tokenCap" ? "a whole number from 0 to 9007199254740991" : `a number from 0 to ${maxUsd}`
  return new InvalidUsage({ field, value: cap, reason: `must be ${rule}, or left out for no cap` })
}
