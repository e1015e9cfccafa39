import type { LimitAxis } from "../BudgetError.ts"

/*
 * A budget's rate, one token bucket per axis: it holds up to `capacity`
 * (one period's worth unless `burst` said otherwise) and refills
 * continuously, `amount` every `periodMillis`. An admission takes from it;
 * a commit gives back what its hold did not use, or takes the excess as
 * debt (the level goes below 0, and later admissions wait it out). The
 * store keeps each bucket's level as of its last change; these formulas are
 * the only place a level moves with time.
 */

/** One axis of a budget's rate, in the store's units (tokens, nano-dollars, requests). */
export interface RateSetting {
  readonly axis: LimitAxis
  /** What refills every period. */
  readonly amount: number
  readonly periodMillis: number
  /** The most the bucket holds. */
  readonly capacity: number
}

/** A bucket's level as of `at` (milliseconds): what it could lend then. */
export interface Bucket {
  level: number
  at: number
}

/** Whether two rates are one: each axis with the same amount, period and capacity. */
export const sameRates = (a: ReadonlyArray<RateSetting>, b: ReadonlyArray<RateSetting>): boolean =>
  a.length === b.length &&
  a.every((rate, i) =>
    rate.axis === b[i]!.axis && rate.amount === b[i]!.amount && rate.periodMillis === b[i]!.periodMillis &&
    rate.capacity === b[i]!.capacity
  )

/** A full bucket, as a budget's rate starts. */
export const fullBucket = (rate: RateSetting, now: number): Bucket => ({ level: rate.capacity, at: now })

/** What the bucket holds at `now`: refilled since its last change, never past its capacity. */
export const levelAt = (rate: RateSetting, bucket: Bucket, now: number): number =>
  now <= bucket.at || bucket.level >= rate.capacity
    ? bucket.level
    : Math.min(rate.capacity, bucket.level + (now - bucket.at) * rate.amount / rate.periodMillis)

/** Brings the bucket's level to `now`. */
export const refill = (rate: RateSetting, bucket: Bucket, now: number): void => {
  if (now <= bucket.at) return
  bucket.level = levelAt(rate, bucket, now)
  bucket.at = now
}

/** What a request of `tokens` and `nanos` takes from a bucket of this axis: a request is 1. */
export const amountOf = (rate: RateSetting, tokens: number, nanos: number): number =>
  rate.axis === "tokens" ? tokens : rate.axis === "usd" ? nanos : 1

/** How long until a bucket at `level` holds `amount` (0 if it does now), in whole milliseconds. */
export const waitMillis = (rate: RateSetting, level: number, amount: number): number =>
  level >= amount ? 0 : Math.ceil((amount - level) * rate.periodMillis / rate.amount)
