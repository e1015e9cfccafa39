import { Cause, Effect, References } from "effect"

/**
 * Runs `self`, reporting a failure nobody waits for at
 * `References.UnhandledLogLevel` (as effect's own `CircuitBreaker` and
 * `Pool` do) instead of swallowing it; an undefined level silences it.
 */
export const reportFailure = (message: string) => <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A | void, never, R> =>
  Effect.catch(self, (error) =>
    Effect.withFiber((fiber) => {
      const level = fiber.getRef(References.UnhandledLogLevel)
      return level === undefined ? Effect.void : Effect.logWithLevel(level)(message, Cause.fail(error))
    }))
