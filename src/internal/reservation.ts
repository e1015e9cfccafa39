import { Effect } from "effect"
import type { Reservation, Settlement } from "../Budget.ts"
import type { BudgetUnavailable, InvalidUsage } from "../BudgetError.ts"
import type { Charge, Hold, Settled } from "../BudgetStore.ts"
import { usageError, usdFromNanos, usdToNanos } from "../Usage.ts"
import type { Usage } from "../Usage.ts"

const released: Settlement = { _tag: "Released", tokens: 0, usd: 0, tokensOverage: 0, usdOverage: 0 }

/** A store's settlement as the caller sees it, in dollars. */
const settlementOf = (settled: Settled): Settlement =>
  settled.committed
    ? {
      _tag: "Committed",
      tokens: settled.tokens,
      usd: usdFromNanos(settled.nanos),
      tokensOverage: settled.tokensOverage,
      usdOverage: usdFromNanos(settled.nanosOverage)
    }
    : released

/**
 * A store's hold as the caller sees it, for every store: validation of the
 * actual, dollars, and what the closing scope does. The store keeps the
 * rule that the first settlement wins.
 */
export class Held implements Reservation {
  readonly usd: number
  /** Settled by a call that succeeded: closing has nothing left to do. */
  private settled = false
  /**
   * The first commit that ran, answered or not: a closing scope retries it
   * rather than releasing, since usage that happened is not dropped.
   */
  private charged: Charge | undefined = undefined

  constructor(
    private readonly hold: Hold,
    readonly tokens: number,
    readonly nanos: number
  ) {
    this.usd = usdFromNanos(nanos)
  }

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
    return this.settle(undefined)
  }

  /** What the scope does as it closes: settle what the caller left unsettled. */
  get close(): Effect.Effect<void> {
    return this.settled ? Effect.void : this.hold.close(this.charged)
  }

  // The charge is remembered when the commit runs, not when it is built.
  private settle(charge: Charge | undefined): Effect.Effect<Settlement, BudgetUnavailable> {
    return Effect.suspend(() => {
      if (charge !== undefined) this.charged ??= charge
      return Effect.map(this.hold.settle(charge), (settled) => {
        this.settled = true
        return settlementOf(settled)
      })
    })
  }
}
