import { Effect } from "effect"
import type { Response } from "effect/ai"
import { InvalidUsage } from "../BudgetError.ts"
import type { PriceFunction, TokenPrices } from "../Pricing.ts"
import { maxUsd } from "../Usage.ts"

/*
 * Prices per million tokens, checked and turned into nano-dollars per
 * token, looked up by model name: what `perMillionTokens` builds a price
 * function from. And a price function's answers, checked.
 */

// Nano-dollars per token at a price per million tokens: 1e9 / 1e6.
const nanosPerTokenPerUsdPerMillion = 1000

export interface NanoPrices {
  readonly input: number
  readonly output: number
  readonly cacheRead: number
  readonly cacheWrite: number
  readonly reasoning: number
}

const priceFields = ["input", "output", "cacheRead", "cacheWrite", "reasoning"] as const

export const pricesTableOf = (
  prices: Readonly<Record<string, TokenPrices>>
): { readonly lookup: (model: string | undefined) => NanoPrices } | InvalidUsage => {
  if (prices === null || typeof prices !== "object" || Object.keys(prices).length === 0) {
    return new InvalidUsage({
      field: "prices",
      value: prices,
      reason: "must map model names (or \"*\") to prices per million tokens, like { \"*\": { input: 0.25, output: 2 } }"
    })
  }
  const byModel = new Map<string, NanoPrices>()
  for (const [model, entry] of Object.entries(prices)) {
    if (entry === null || typeof entry !== "object") {
      return new InvalidUsage({
        field: `prices["${model}"]`,
        value: entry,
        reason: "must be an object like { input: 0.25, output: 2 } (USD per million tokens)"
      })
    }
    for (const field of priceFields) {
      const price = entry[field]
      const required = field === "input" || field === "output"
      if (price === undefined && !required) continue
      if (!(typeof price === "number" && price >= 0 && price <= maxUsd)) {
        return new InvalidUsage({
          field: `prices["${model}"].${field}`,
          value: price,
          reason: `must be USD per million tokens, a number from 0 to ${maxUsd}${required ? "" : ", or left out"}`
        })
      }
    }
    const input = entry.input * nanosPerTokenPerUsdPerMillion
    const output = entry.output * nanosPerTokenPerUsdPerMillion
    byModel.set(model, {
      input,
      output,
      cacheRead: entry.cacheRead === undefined ? input : entry.cacheRead * nanosPerTokenPerUsdPerMillion,
      cacheWrite: entry.cacheWrite === undefined ? input : entry.cacheWrite * nanosPerTokenPerUsdPerMillion,
      reasoning: entry.reasoning === undefined ? output : entry.reasoning * nanosPerTokenPerUsdPerMillion
    })
  }
  const all = [...byModel.values()]
  const highest: NanoPrices = {
    input: Math.max(...all.map((p) => p.input)),
    output: Math.max(...all.map((p) => p.output)),
    cacheRead: Math.max(...all.map((p) => p.cacheRead)),
    cacheWrite: Math.max(...all.map((p) => p.cacheWrite)),
    reasoning: Math.max(...all.map((p) => p.reasoning))
  }
  // Longest first, so the most specific prefix wins.
  const prefixes = [...byModel.keys()].filter((key) => key !== "*").sort((a, b) => b.length - a.length)
  const fallback = byModel.get("*") ?? highest
  return {
    lookup: (model) => {
      if (model === undefined) return fallback
      const exact = byModel.get(model)
      if (exact !== undefined) return exact
      const prefix = prefixes.find((key) => model.startsWith(key))
      return prefix === undefined ? fallback : byModel.get(prefix)!
    }
  }
}

/** What `usage` costs at `prices`, in nano-dollars, rounded once at the end. */
export const nanosOf = (usage: Response.Usage, prices: NanoPrices): number => {
  const input = usage.inputTokens
  const cacheRead = input.cacheRead ?? 0
  const cacheWrite = input.cacheWrite ?? 0
  const uncached = input.uncached ?? Math.max(0, (input.total ?? 0) - cacheRead - cacheWrite)
  const output = usage.outputTokens
  const reasoning = output.reasoning ?? 0
  const text = output.text ?? Math.max(0, (output.total ?? 0) - reasoning)
  return Math.round(
    uncached * prices.input + cacheRead * prices.cacheRead + cacheWrite * prices.cacheWrite +
      text * prices.output + reasoning * prices.reasoning
  )
}

/** Why `value` is not a dollar amount (a price, or one held instead of a price), or `undefined`. */
export const usdError = (field: string, value: unknown): InvalidUsage | undefined =>
  value === undefined || (typeof value === "number" && value >= 0 && value <= maxUsd)
    ? undefined
    : new InvalidUsage({ field, value, reason: `must be a dollar amount from 0 to ${maxUsd}` })

/** The model a price function was called with, as an error's field names it. */
const modelArgument = (model: string | undefined) => model === undefined ? "<no model name>" : JSON.stringify(model)

/**
 * What `price` says `usage` costs, or why its answer is unusable (it threw,
 * or returned no dollar amount). No price function prices everything at $0.
 */
export const priceUsage = (
  price: PriceFunction | undefined,
  usage: Response.Usage,
  model: string | undefined
): Effect.Effect<number, InvalidUsage> => {
  if (price === undefined) return Effect.succeed(0)
  return Effect.flatMap(
    Effect.try({
      try: () => price(usage, model),
      catch: (cause) =>
        new InvalidUsage({
          field: `price(usage, ${modelArgument(model)})`,
          value: cause,
          reason: "threw"
        })
    }),
    (usd) => {
      const invalid = usdError(`price(usage, ${modelArgument(model)})`, usd)
      return invalid === undefined ? Effect.succeed(usd) : Effect.fail(invalid)
    }
  )
}
