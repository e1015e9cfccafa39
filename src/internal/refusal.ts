import { Duration } from "effect"
import type { Axis } from "../BudgetError.ts"
import { BudgetExceeded, InvalidUsage } from "../BudgetError.ts"
import type { Refusal } from "../BudgetStore.ts"
import { usdFromNanos } from "../Usage.ts"

/** The `BudgetExceeded` a refusal is to the caller: every store refuses through this. */
export const exceeded = (refusal: Refusal): BudgetExceeded => {
  const inUnits = refusal.axis === "usd" ? usdFromNanos : (amount: number) => amount
  return new BudgetExceeded({
    budget: refusal.budget,
    limit: refusal.limit ?? "cap",
    axis: refusal.axis,
    requested: inUnits(refusal.requested),
    attempted: inUnits(refusal.attempted),
    cap: inUnits(refusal.cap),
    ...(refusal.retryAfterMillis === undefined ? {} : { retryAfter: Duration.millis(refusal.retryAfterMillis) })
  })
}

/**
 * A commit that would take a budget's use past what a counter holds
 * exactly (2^53 - 1 tokens or nano-dollars): it fails rather than rounds,
 * and changes nothing. `amount` is in the store's units.
 */
export const inexact = (budget: string, axis: Axis, amount: number): InvalidUsage =>
  new InvalidUsage({
    field: axis === "tokens" ? "actual.tokens" : "actual.usd",
    value: axis === "tokens" ? amount : usdFromNanos(amount),
    reason: `would take budget "${budget}"'s ${axis} used past ${
      axis === "tokens" ? Number.MAX_SAFE_INTEGER : `$${usdFromNanos(Number.MAX_SAFE_INTEGER)}`
    }, the most it counts exactly`
  })
