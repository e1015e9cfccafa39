import { Effect } from "effect"
import type { InvalidUsage } from "../BudgetError.ts"
import { usageError, usdToNanos } from "../Usage.ts"
import type { Usage } from "../Usage.ts"

/** A store's hold, as a commit sees it. */
export interface Settleable<A, E> {
  readonly tokens: number
  readonly nanos: number
  /** Charges these amounts; `estimated` when no actual was given. */
  readonly charge: (tokens: number, nanos: number, estimated: boolean) => Effect.Effect<A, E>
}

/**
 * Commits `hold` with `actual`: each axis left out is charged at the amount
 * held, and a commit with no actual at all is an estimated one. An invalid
 * actual fails and charges nothing. Every store's reservation commits
 * through this.
 */
export const commitActual = <A, E>(hold: Settleable<A, E>, actual: Usage | undefined): Effect.Effect<A, E | InvalidUsage> => {
  if (actual === undefined) return hold.charge(hold.tokens, hold.nanos, true)
  const invalid = usageError(actual, "actual")
  if (invalid !== undefined) return Effect.fail(invalid)
  return hold.charge(
    actual.tokens ?? hold.tokens,
    actual.usd === undefined ? hold.nanos : usdToNanos(actual.usd),
    false
  )
}
