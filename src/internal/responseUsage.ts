import { Response } from "effect/ai"

/*
 * `effect/ai`'s `Response.Usage` in the tokens a budget counts: the input
 * and output a provider reported, and an estimate written as a usage, so
 * that a price function can price it.
 */

/** An estimate as a usage: the input uncached, the output text, so caching never makes a hold too small. */
export const usageOf = (inputTokens: number, outputTokens: number): Response.Usage =>
  new Response.Usage({
    inputTokens: { uncached: inputTokens, total: inputTokens },
    outputTokens: { total: outputTokens, text: outputTokens }
  })

/** Input tokens the provider reported, or `undefined` when it reported none. */
export const reportedInput = (usage: Response.Usage): number | undefined => {
  const input = usage.inputTokens
  if (input.total !== undefined) return input.total
  if (input.uncached === undefined && input.cacheRead === undefined && input.cacheWrite === undefined) return undefined
  return (input.uncached ?? 0) + (input.cacheRead ?? 0) + (input.cacheWrite ?? 0)
}

/** Output tokens the provider reported (reasoning included), or `undefined`. */
export const reportedOutput = (usage: Response.Usage): number | undefined => {
  const output = usage.outputTokens
  if (output.total !== undefined) return output.total
  if (output.text === undefined && output.reasoning === undefined) return undefined
  return (output.text ?? 0) + (output.reasoning ?? 0)
}
