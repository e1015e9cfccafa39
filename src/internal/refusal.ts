import { BudgetExceeded } from "../BudgetError.ts"
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
