/**
 * A benchmark case: something that can take one timed sample, and what its
 * figure is judged against.
 */
import type { Effect } from "effect"

/** A case whose figure another is divided by, and the ratio allowed. */
export interface Versus {
  readonly case: string
  readonly target?: number
}

export interface Case {
  readonly name: string
  /** One sample: nanoseconds per op over a fresh batch. */
  readonly sample: Effect.Effect<number, unknown>
  /** What its figure is judged against: one case, or several (a row each). */
  readonly versus?: Versus | ReadonlyArray<Versus>
}

/** The comparisons a case makes: none, one, or several. */
export const versusOf = (c: Case): ReadonlyArray<Versus | undefined> =>
  c.versus === undefined ? [undefined] : "case" in c.versus ? [c.versus] : c.versus as ReadonlyArray<Versus>
