import type { Effect, Scope, Stream } from "effect"
import type { Reservation, Snapshot } from "../Budget.ts"
import type { BudgetExceeded, BudgetUnavailable, InvalidUsage } from "../BudgetError.ts"
import type { BudgetEvent } from "../BudgetEvent.ts"
import type { BudgetSettings } from "./options.ts"

/**
 * The seam between the `Budget` service and where its counters live. Amounts
 * arrive validated, tokens as safe integers and money as whole nano-dollars;
 * a store only checks caps and applies changes atomically.
 *
 * A store keeps a tree of budgets: a charge on one applies to it and to
 * every ancestor at once, or to none.
 *
 * A store's `reserve` runs inside `acquireRelease`'s uninterruptible acquire:
 * it may make only its waiting interruptible, so a hold it takes always
 * reaches the caller, who registers its release.
 */
export interface BudgetStore<R extends Reservation = Reservation> {
  /** Where the budget sits in its tree: `root/tenant-a/agent-7`. */
  readonly path: string
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
  /** The child of that name, made or met again, kept while the scope lasts. */
  readonly child: (
    settings: BudgetSettings
  ) => Effect.Effect<BudgetStore<R>, InvalidUsage | BudgetUnavailable, Scope.Scope>
  /** Events of this budget and every budget below it. */
  readonly events: Stream.Stream<BudgetEvent>
}
