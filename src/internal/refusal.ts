import type { Axis } from "../BudgetError.ts"
import { BudgetExceeded, InvalidUsage } from "../BudgetError.ts"
import type { Refusal } from "../BudgetStore.ts"
import { usdFromNanos } from "../Usage.ts"

/** The `BudgetExceeded` a refusal is to the caller: every store refuses through this. */
export const exceeded = (refusal: Refusal): BudgetExceeded =>
  refusal.axis === "tokens"
    ? new BudgetExceeded(refusal)
    : new BudgetExceeded({
      budget: refusal.budget,
      axis: "usd",
      requested: usdFromNanos(refusal.requested),
      attempted: usdFromNanos(refusal.attempted),
      cap: usdFromNanos(refusal.cap)
    })

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
