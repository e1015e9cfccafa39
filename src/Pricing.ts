/**
 * Prices of LLM calls: a `PriceFunction` turns the usage a provider reported
 * into US dollars, and `perMillionTokens` builds a checked one from your
 * provider's prices per million tokens. `BudgetedLanguageModel` charges
 * every call at the price its `price` option gives.
 *
 * @since 0.1.0
 */
import { Effect } from "effect"
import type { Response } from "effect/ai"
import { InvalidUsage } from "./BudgetError.ts"
import { nanosOf, pricesTableOf } from "./internal/pricing.ts"
import { usdFromNanos } from "./Usage.ts"

/**
 * Prices one call in US dollars from the usage the provider reported and the
 * model's name (from the response, else `Model.ModelName` in context, else the
 * layer's `model` option; `undefined` when none names it). Must return a
 * number from 0 to `maxUsd`.
 *
 * @example
 * ```ts
 * import type { Pricing } from "effect-token-budget"
 *
 * // $0.001 a request, plus $3 / $15 per million input / output tokens
 * const price: Pricing.PriceFunction = (usage) =>
 *   0.001 + ((usage.inputTokens.total ?? 0) * 3 + (usage.outputTokens.total ?? 0) * 15) / 1_000_000
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export type PriceFunction = (usage: Response.Usage, model: string | undefined) => number

/**
 * A model's prices in US dollars per million tokens. Cache reads and writes
 * default to the input price, reasoning to the output price.
 *
 * @example
 * ```ts
 * import type { Pricing } from "effect-token-budget"
 *
 * const large: Pricing.TokenPrices = { input: 3, cacheRead: 0.3, cacheWrite: 3.75, output: 15 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export interface TokenPrices {
  /** Uncached input (prompt) tokens. */
  readonly input: number
  /** Output tokens: the answer's text, and its reasoning unless `reasoning` is set. */
  readonly output: number
  /** Input tokens read from the provider's prompt cache. */
  readonly cacheRead?: number | undefined
  /** Input tokens written to the provider's prompt cache. */
  readonly cacheWrite?: number | undefined
  /** Reasoning (thinking) output tokens. */
  readonly reasoning?: number | undefined
}

/**
 * Builds a `PriceFunction` from prices per million tokens, keyed by model
 * name. A model takes the prices of its exact name, else of the longest key
 * its name starts with (`"gpt-5-mini"` prices `"gpt-5-mini-2025-08-07"`),
 * else of `"*"`; a model none of these match is priced at the highest price
 * of each kind in the table, so it is never under-charged. Fails with
 * `InvalidUsage` when a price is not a usable number. No prices ship with
 * this library: copy your provider's.
 *
 * Uncached input is priced at `input`, cache reads at `cacheRead`, cache
 * writes at `cacheWrite`; output text at `output` and reasoning at
 * `reasoning`. When the provider gives only totals, input counts as uncached
 * and output as text.
 *
 * @example
 * ```ts
 * import { Pricing } from "effect-token-budget"
 *
 * const price = Pricing.perMillionTokens({
 *   "small-model": { input: 0.25, cacheRead: 0.025, output: 2 },
 *   "large-model": { input: 3, cacheRead: 0.3, cacheWrite: 3.75, output: 15 }
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const perMillionTokens = (
  prices: Readonly<Record<string, TokenPrices>>
): Effect.Effect<PriceFunction, InvalidUsage> =>
  Effect.suspend(() => {
    const table = pricesTableOf(prices)
    if (table instanceof InvalidUsage) return Effect.fail(table)
    return Effect.succeed((usage: Response.Usage, model: string | undefined) =>
      usdFromNanos(nanosOf(usage, table.lookup(model)))
    )
  })
