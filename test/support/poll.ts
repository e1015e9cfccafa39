/**
 * Waiting for a condition instead of a guessed time: a check polled until it
 * holds, bounded by a timeout that fails the test naming what never held.
 */
import { Clock, Effect, Schedule } from "effect"
import type { Duration } from "effect"

/** The host's clock: a test's `TestClock` does not hold the polling up. */
const hostClock = Clock.Clock.defaultValue()

export interface PollOptions {
  /** Between two checks; defaults to 5 ms. */
  readonly every?: Duration.Input | undefined
  /** The test fails if the condition does not hold by then; defaults to 10 seconds. */
  readonly within?: Duration.Input | undefined
}

/**
 * Runs `check` until it answers true, every `every` on the host's clock;
 * dies naming `what` after `within`. The check itself runs on the caller's
 * clock (a budget with a window reads the `TestClock`'s time).
 */
export const eventually = <E, R>(
  what: string,
  check: Effect.Effect<boolean, E, R>,
  options: PollOptions = {}
): Effect.Effect<void, E, R> =>
  Effect.withFiber((fiber) => {
    const callerClock = fiber.getRef(Clock.Clock)
    return Effect.repeat(Effect.provideService(check, Clock.Clock, callerClock), {
      until: (holds) => holds,
      schedule: Schedule.spaced(options.every ?? "5 millis")
    }).pipe(
      Effect.timeoutOrElse({
        duration: options.within ?? "10 seconds",
        orElse: () => Effect.die(new Error(`never held: ${what}`))
      }),
      Effect.asVoid,
      Effect.provideService(Clock.Clock, hostClock)
    )
  })
