import type { Snapshot } from "../Budget.ts"
import type { Counters } from "../BudgetStore.ts"
import { usdFromNanos } from "../Usage.ts"

/** A budget's counters as the caller sees them: dollars, and what remains. */
export const snapshotOf = (path: string, counters: Counters): Snapshot => ({
  name: path.slice(path.lastIndexOf("/") + 1),
  path,
  tokensUsed: counters.tokensUsed,
  usdUsed: usdFromNanos(counters.nanosUsed),
  tokensReserved: counters.tokensReserved,
  usdReserved: usdFromNanos(counters.nanosReserved),
  tokenCap: counters.tokenCap,
  usdCap: usdFromNanos(counters.nanoCap),
  tokensRemaining: Math.max(0, counters.tokenCap - counters.tokensUsed - counters.tokensReserved),
  usdRemaining: usdFromNanos(Math.max(0, counters.nanoCap - counters.nanosUsed - counters.nanosReserved)),
  windowEndsAt: counters.windowEndsAt,
  rates: (counters.rates ?? []).map(({ axis, capacity, level }) =>
    axis === "usd"
      ? { axis, available: usdFromNanos(Math.round(level)), capacity: usdFromNanos(capacity) }
      : { axis, available: level, capacity }
  ),
  maxConcurrent: counters.maxConcurrent ?? Infinity,
  inFlight: counters.inFlight
})
