import { Effect, Exit } from "effect"
import type { Fiber } from "effect"

/**
 * Calls `done` once: with `fiber`'s exit, or with `late()` if it has not
 * finished within `millis` (it is then interrupted). Returns how to stop
 * waiting without calling `done`.
 *
 * The timer is the host's, not `Clock`'s: a deadline on the network holds
 * even where a `TestClock` stops time.
 */
export const awaitWithin = <A, E>(
  fiber: Fiber.Fiber<A, E>,
  millis: number,
  late: () => E,
  done: (exit: Exit.Exit<A, E>) => void
): () => void => {
  const timer = setTimeout(() => {
    stop()
    fiber.interruptUnsafe()
    done(Exit.fail(late()))
  }, millis)
  const stop = fiber.addObserver((exit) => {
    clearTimeout(timer)
    done(exit)
  })
  return () => {
    clearTimeout(timer)
    stop()
  }
}

/**
 * `self`, or `late()` if it has not finished within `millis`; `self` is then
 * interrupted. Unlike `Effect.timeout`, which races two forked fibers and
 * costs a scheduler turn or two per call, this forks `self` to start at once
 * and waits on one timer: cheap enough for every round trip to Redis.
 */
export const deadline = <A, E, R>(self: Effect.Effect<A, E, R>, millis: number, late: () => E): Effect.Effect<A, E, R> =>
  Effect.flatMap(Effect.forkChild(self, { startImmediately: true }), (child) => {
    const done = child.pollUnsafe()
    if (done !== undefined) return done
    return Effect.callback<A, E>((resume) => {
      const stop = awaitWithin(child, millis, late, resume)
      return Effect.sync(() => {
        stop()
        child.interruptUnsafe()
      })
    })
  })
