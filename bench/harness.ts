/**
 * How every case is timed: `ops` runs of one effect inside a single
 * `Effect.whileLoop`, the runtime's own loop primitive, so the per-op
 * overhead of the harness is one stack push and one thunk call — the same
 * for floors, peers and our own operations.
 */
import { Effect } from "effect"

const now = (): bigint => process.hrtime.bigint()
const noop = (): void => {}

/** Runs `body()` `times` times in a row, in this fiber. */
export const repeat = <E, R>(times: number, body: () => Effect.Effect<unknown, E, R>): Effect.Effect<void, E, R> =>
  Effect.suspend(() => {
    let left = times
    return Effect.whileLoop({ while: () => left-- > 0, body, step: noop })
  })

/** Nanoseconds per unit of a whole effect that does `units` of work. */
export const timeOnce = <E, R>(units: number, effect: Effect.Effect<unknown, E, R>): Effect.Effect<number, E, R> =>
  Effect.suspend(() => {
    const start = now()
    return Effect.map(effect, () => Number(now() - start) / units)
  })

/** Nanoseconds per run of `body()`, over `ops` runs in one fiber. */
export const timeLoop = <E, R>(ops: number, body: () => Effect.Effect<unknown, E, R>): Effect.Effect<number, E, R> =>
  timeOnce(ops, repeat(ops, body))

/** Nanoseconds per op of a plain synchronous loop, for the plain-JS floor. */
export const timeSync = (ops: number, body: () => void): number => {
  const start = now()
  for (let i = 0; i < ops; i++) body()
  return Number(now() - start) / ops
}

/** Nanoseconds per op of awaiting `body()` `ops` times in a row. */
export const timeAwait = async (ops: number, body: () => Promise<unknown>): Promise<number> => {
  const start = now()
  for (let i = 0; i < ops; i++) await body()
  return Number(now() - start) / ops
}

export const median = (xs: ReadonlyArray<number>): number => {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
