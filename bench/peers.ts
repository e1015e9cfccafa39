/**
 * Peers: other ways to guard a shared allowance, each against the floor
 * nearest its shape.
 */
import { Effect, Layer, Semaphore } from "effect"
import { RateLimiter } from "effect/persistence"
import { RateLimiterMemory } from "rate-limiter-flexible"
import type { Case } from "./case.ts"
import { names as floor } from "./floors.ts"
import { timeAwait, timeLoop } from "./harness.ts"
import { ops } from "./workload.ts"

export const names = {
  flexible: "peer: rate-limiter-flexible consume",
  limiter: "peer: effect RateLimiter consume",
  semaphore: "peer: Semaphore.withPermits(1)"
} as const

const limiterLayer = RateLimiter.layer.pipe(Layer.provide(RateLimiter.layerStoreMemory))

export const peerCases: Effect.Effect<ReadonlyArray<Case>> = Effect.gen(function*() {
  // Points no run can use up, in a window that never ends (duration 0).
  const flexible = new RateLimiterMemory({ points: Number.MAX_SAFE_INTEGER, duration: 0 })
  const limiter = yield* Effect.provide(RateLimiter.RateLimiter, limiterLayer)
  const semaphore = Semaphore.makeUnsafe(1)
  return [
    {
      name: names.flexible,
      // Promise-based: each consume is awaited before the next, as a caller
      // guarding a request would.
      sample: Effect.promise(() => timeAwait(ops.small, () => flexible.consume("bench", 1))),
      versus: { case: floor.ref }
    },
    {
      name: names.limiter,
      sample: timeLoop(
        ops.small,
        () => limiter.consume({ key: "bench", limit: Number.MAX_SAFE_INTEGER, window: "1 hour", tokens: 1 })
      ),
      versus: { case: floor.ref }
    },
    {
      name: names.semaphore,
      sample: timeLoop(ops.small, () => semaphore.withPermits(1)(Effect.void)),
      versus: { case: floor.bracket }
    }
  ]
})
