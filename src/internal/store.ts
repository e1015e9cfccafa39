import type { Effect } from "effect"
import type { Reservation, Snapshot } from "../Budget.ts"
import type { BudgetExceeded, BudgetUnavailable } from "../BudgetError.ts"

/**
 * The seam between the `Budget` service and where its counters live. Amounts
 * arrive validated, tokens as safe integers and money as whole nano-dollars;
 * a store only checks caps and applies changes atomically.
 *
 * A store's `reserve` runs inside `acquireRelease`'s uninterruptible acquire:
 * it may make only its waiting interruptible, so a hold it takes always
 * reaches the caller, who registers its release.
 */
export interface BudgetStore<R extends Reservation = Reservation> {
  readonly record: (tokens: number, nanos: number) => Effect.Effect<void, BudgetExceeded | BudgetUnavailable>
  readonly reserve: (
    tokens: number,
    nanos: number,
    wait: boolean
  ) => Effect.Effect<R, BudgetExceeded | BudgetUnavailable>
  /** How a closing scope gives a hold back: it cannot fail the scope. */
  readonly releaseOnClose: (reservation: R) => Effect.Effect<unknown>
  readonly snapshot: Effect.Effect<Snapshot, BudgetUnavailable>
  readonly reset: Effect.Effect<void, BudgetUnavailable>
}
