import { Effect } from "effect"
import type { Reservation, Settlement } from "../Budget.ts"
import type { BudgetUnavailable, InvalidUsage } from "../BudgetError.ts"
import type { Charge } from "../BudgetStore.ts"
import type { Labels } from "../Ledger.ts"
import { noLabels } from "./labels.ts"
import { usageError, usdFromNanos, usdToNanos } from "../Usage.ts"
import type { Usage } from "../Usage.ts"

/** What every release settles to. */
export const released: Settlement = { _tag: "Released", tokens: 0, usd: 0, tokensOverage: 0, usdOverage: 0 }

/** A charge as the caller sees it, in dollars. */
export const committed = (
  tokens: number,
  nanos: number,
  tokensOverage: number,
  nanosOverage: number
): Extract<Settlement, { readonly _tag: "Committed" }> => ({
  _tag: "Committed",
  tokens,
  usd: usdFromNanos(nanos),
  tokensOverage,
  usdOverage: usdFromNanos(nanosOverage)
})

/**
 * What a commit after its hold was released (its scope closed first) says:
 * the usage happened, so it is charged all the same, past a cap if it must.
 */
export const warnLateCommit = (budget: string, charge: Charge): Effect.Effect<void> =>
  Effect.logWarning(
    `Budget "${budget}": a commit after its hold was released charges ${charge.tokens} tokens and ` +
      `$${usdFromNanos(charge.nanos)} all the same (the usage happened); commit before the reservation's scope closes`
  )

/**
 * A hold, as every store's holds are: the store settles, this validates
 * the actual and fills in what was left out. The store's own hold class
 * extends it, so a reservation costs one object and no step of its own.
 */
export abstract class Hold implements Reservation {
  readonly usd: number

  constructor(readonly tokens: number, readonly nanos: number, readonly labels: Labels = noLabels) {
    this.usd = usdFromNanos(nanos)
  }

  /**
   * Charges `charge`, or gives the hold back when it is undefined. A hold
   * is charged once: a commit, however often or late it is retried,
   * returns the first charge. One given back is charged by a later commit
   * all the same, as one that holds nothing (the usage happened), with a
   * warning (`warnLateCommit`). A release after a settlement returns it. A
   * charge that would take a budget's use past what a counter holds
   * exactly fails with `InvalidUsage` and changes nothing.
   */
  abstract settle(charge: Charge | undefined): Effect.Effect<Settlement, BudgetUnavailable | InvalidUsage>

  /**
   * What a closing scope does: nothing if the hold was settled; else the
   * settlement of a commit that ran but had no answer (usage that happened
   * is not dropped), or a release. A store that cannot reach its state
   * lets the hold lapse (a remote store's lease). Never fails.
   */
  abstract readonly close: Effect.Effect<void>

  /** Each axis left out charges the amount held; no actual at all is an estimated commit. */
  commit(actual?: Usage): Effect.Effect<Settlement, InvalidUsage | BudgetUnavailable> {
    if (actual === undefined) return this.settle({ tokens: this.tokens, nanos: this.nanos, estimated: true })
    const invalid = usageError(actual, "actual")
    if (invalid !== undefined) return Effect.fail(invalid)
    return this.settle({
      tokens: actual.tokens ?? this.tokens,
      nanos: actual.usd === undefined ? this.nanos : usdToNanos(actual.usd),
      estimated: false
    })
  }

  get release(): Effect.Effect<Settlement, BudgetUnavailable> {
    // A release charges nothing, so it is never past the exact limit.
    return this.settle(undefined) as Effect.Effect<Settlement, BudgetUnavailable>
  }
}
