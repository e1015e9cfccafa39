import type { Axis } from "../BudgetError.ts"
import { BudgetExceeded } from "../BudgetError.ts"
import { usdFromNanos } from "../Usage.ts"

/** A refusal in a store's units: tokens, or nano-dollars on the `usd` axis. */
export interface Refusal {
  /** The path of the budget that refused. */
  readonly budget: string
  readonly axis: Axis
  readonly requested: number
  /** Used + reserved + requested. */
  readonly attempted: number
  readonly cap: number
}

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
