import { Effect } from "effect"

/**
 * `self`, or `late()` if it has not finished within `millis`; `self` is then
 * interrupted. Unlike `Effect.timeout`, which races two forked fibers and
 * costs a scheduler turn or two per call, this forks `self` to start at once
 * and waits on one timer: cheap enough for every round trip to Redis.
 *
 * The timer is the host's, not `Clock`'s: a deadline on the network holds
 * even where a `TestClock` stops time.
 */
export const deadline = <A, E, R>(self: Effect.Effect<A, E, R>, millis: number, late: () => E): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.forkChild(self, { startImmediately: true }), (child) => {
    const done = child.pollUnsafe()
    if (done !== undefined) return done
    return Effect.callback<A, E>((resume) => {
      const timer = setTimeout(() => {
        stop()
        child.interruptUnsafe()
        resume(Effect.fail(late()))
      }, millis)
      const stop = child.addObserver((exit) => {
        clearTimeout(timer)
        resume(exit)
      })
      return Effect.sync(() => {
        clearTimeout(timer)
        stop()
        child.interruptUnsafe()
      })
    })
  })
