/**
 * The work every case does: one LLM call's estimate and its actual usage,
 * and how many ops a sample takes.
 */

/** What one LLM call is expected to cost, and what it did cost. */
export const estimate = { tokens: 1200, usd: 0.0036 }
export const actual = { tokens: 1000, usd: 0.003 }

/** Batch sizes: big enough that a sample takes milliseconds, not microseconds. */
export const ops = {
  /** Sub-100 ns operations. */
  tiny: 400_000,
  /** Scoped and bracketed operations, a few hundred ns. */
  small: 100_000,
  /** Refusals, several µs each: building the error is most of it. */
  refusal: 10_000
} as const
