import { Effect } from "effect"

/*
 * Time another party keeps: Redis's clock decides when a lease or a
 * listener's registration runs out, so what renews them waits on the
 * host's timers, not on `Clock`. A `TestClock` that stands still must not
 * stop a lease's renewal while its scope is open, nor a store's close wait
 * for ever on a ledger sink that does not answer.
 */

/** Waits `millis` of the host's time. */
export const sleep = (millis: number): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const timer = setTimeout(() => resume(Effect.void), millis)
    return Effect.sync(() => clearTimeout(timer))
  })

/** Runs `effect` every `millis` of the host's time, for ever. */
export const every = <E, R>(millis: number, effect: Effect.Effect<unknown, E, R>): Effect.Effect<never, E, R> =>
  Effect.forever(Effect.andThen(sleep(millis), effect))
