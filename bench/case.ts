/**
 * A benchmark case: something that can take one timed sample, and what its
 * figure is judged against.
 */
import type { Effect } from "effect"

export interface Case {
  readonly name: string
  /** One sample: nanoseconds per op over a fresh batch. */
  readonly sample: Effect.Effect<number, unknown>
  /** The case whose figure this one is divided by, and the ratio allowed. */
  readonly versus?: { readonly case: string; readonly target?: number }
}
