import { Effect } from "effect"
import type { Reconfigured } from "../BudgetEvent.ts"
import { usdFromNanos } from "../Usage.ts"
import { type RateSetting, sameRates } from "./rate.ts"

/** Caps in a store's units: tokens and nano-dollars, `Infinity` for none. */
interface Caps {
  readonly tokenCap: number
  readonly nanoCap: number
}

/** Every limit of a budget: its caps, its rate and its most in flight. */
interface Limits extends Caps {
  readonly rates: ReadonlyArray<RateSetting>
  readonly maxConcurrent: number
}

/** Whether opening a budget with `next` changes any of its limits. */
export const limitsDiffer = (previous: Limits, next: Limits): boolean =>
  capsDiffer(previous, next) || !sameRates(previous.rates, next.rates) || previous.maxConcurrent !== next.maxConcurrent

/** Whether opening a budget with `next` changes the caps it had. */
export const capsDiffer = (previous: Caps, next: Caps): boolean =>
  previous.tokenCap !== next.tokenCap || previous.nanoCap !== next.nanoCap

/** The event of a budget opened again with other caps. */
export const reconfigured = (budget: string, previous: Caps, next: Caps): Reconfigured => ({
  _tag: "Reconfigured",
  budget,
  tokenCap: next.tokenCap,
  usdCap: usdFromNanos(next.nanoCap),
  previousTokenCap: previous.tokenCap,
  previousUsdCap: usdFromNanos(previous.nanoCap)
})

const rateOf = (rates: ReadonlyArray<RateSetting>): string =>
  rates.length === 0 ? "none" : rates.map((rate) =>
    `${rate.axis === "usd" ? `$${usdFromNanos(rate.amount)}` : `${rate.amount} ${rate.axis}`} per ${rate.periodMillis} ms`
  ).join(", ")

const describe = (limits: Limits, rates: boolean): string =>
  `tokenCap ${limits.tokenCap === Infinity ? "none" : limits.tokenCap} and usdCap ${
    limits.nanoCap === Infinity ? "none" : `$${usdFromNanos(limits.nanoCap)}`
  }` +
  (rates
    ? `, rate ${rateOf(limits.rates)} and maxConcurrent ${limits.maxConcurrent === Infinity ? "none" : limits.maxConcurrent}`
    : "")

/**
 * Never silent: a budget opened with other limits than it had takes them
 * (those given last apply, in every process), and the process that changed
 * them says so. (Opening a budget only to read it: give it the same options.)
 */
export const warnLimitsChanged = (budget: string, previous: Limits, next: Limits): Effect.Effect<void> => {
  const rates = !sameRates(previous.rates, next.rates) || previous.maxConcurrent !== next.maxConcurrent
  return Effect.logWarning(
    `Budget "${budget}" was opened with ${describe(next, rates)} where it had ${describe(previous, rates)}: ` +
      `the limits given last now apply, in every process that shares it. Open it with the same options everywhere ` +
      `to keep them.`
  )
}
