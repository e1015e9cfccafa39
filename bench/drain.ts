/**
 * Draining a line of waiters through a cap that fits one request. Only the
 * head of the line is woken, and it wakes the next as it leaves, so N
 * waiters should cost O(N) in all: the same per waiter at 1,000 and 10,000.
 * A design that woke every waiter on each release would cost O(N²) here,
 * and the per-waiter figure would grow about tenfold.
 */
import { Deferred, Effect, Fiber } from "effect"
import { Budget } from "../src/index.ts"
import type { Case } from "./case.ts"
import { timeOnce } from "./harness.ts"
import { estimate } from "./workload.ts"

const collectGarbage: () => void = (globalThis as { gc?: () => void }).gc ?? (() => {})

const stuckAfter = "5 seconds"
const stuck = (waiters: number) =>
  `${waiters} waiters still asleep ${stuckAfter} after the holder's release: it did not wake the line`

const name = (waiters: number) => `drain ${waiters.toLocaleString("en-US")} waiters, per waiter`

/** Nanoseconds per waiter, from the holder's release until all are done. */
const drain = (waiters: number) =>
  Effect.scoped(Effect.gen(function*() {
    const budget = yield* Budget.make({ tokenCap: estimate.tokens })
    const holder = yield* budget.reserve(estimate)
    let queued = 0
    // Each charges nothing, so the room its hold frees is there for the next.
    const waiter = Effect.scoped(Effect.suspend(() => {
      queued++
      return Effect.flatMap(
        budget.reserve(estimate, { onExceeded: "wait" }),
        (r) => r.commit({ tokens: 0, usd: 0 })
      )
    }))
    const line = yield* Effect.forkScoped(
      Effect.forEach(Array.from({ length: waiters }), () => waiter, { concurrency: "unbounded", discard: true })
    )
    // Untimed: let every waiter start and join the line.
    while (queued < waiters) yield* Effect.yieldNow
    yield* Effect.yieldNow
    // Start each sample from a collected heap (`npm run bench` exposes gc),
    // so garbage left by earlier cases is not billed to this one.
    collectGarbage()
    // A lost wake-up would leave the line asleep for good: fail, not hang.
    const drained = Fiber.join(line).pipe(
      Effect.timeoutOrElse({ duration: stuckAfter, orElse: () => Effect.fail(new Error(stuck(waiters))) })
    )
    return yield* timeOnce(waiters, Effect.andThen(holder.release, drained))
  }))

const relayName = (fibers: number) => `floor: relay ${fibers.toLocaleString("en-US")} fibers, per fiber`

/**
 * The runtime's own cost of the same shape, with no budget: N fibers forked
 * the same way, each waiting for a `Deferred` that the one before it
 * completes after a turn of the scheduler. What it gains from 1,000 to 10,000 fibers (memory over many
 * live fibers, collection) is the runtime's, not the line's.
 */
const relay = (fibers: number) =>
  Effect.scoped(Effect.gen(function*() {
    const gates = yield* Effect.forEach(Array.from({ length: fibers + 1 }), () => Deferred.make<void>())
    let started = 0
    const line = yield* Effect.forkScoped(
      Effect.forEach(gates.slice(0, fibers), (gate, i) =>
        Effect.suspend(() => {
          started++
          // A turn of the scheduler between hand-overs, as the line takes:
          // completing a Deferred resumes its waiter inline.
          return Deferred.await(gate).pipe(
            Effect.andThen(Effect.yieldNow),
            Effect.andThen(Deferred.succeed(gates[i + 1]!, undefined))
          )
        }), { concurrency: "unbounded", discard: true })
    )
    while (started < fibers) yield* Effect.yieldNow
    yield* Effect.yieldNow
    collectGarbage()
    return yield* timeOnce(fibers, Effect.andThen(Deferred.succeed(gates[0]!, undefined), Fiber.join(line)))
  }))

// O(N) reads about 1.0x, plus what the runtime itself gains over many live
// fibers (the relay floors show it); the target is far below the ~10x of
// O(N²).
export const drainCases: Effect.Effect<ReadonlyArray<Case>> = Effect.succeed([
  { name: name(1_000), sample: drain(1_000), versus: { case: relayName(1_000) } },
  { name: name(10_000), sample: drain(10_000), versus: { case: name(1_000), target: 1.5 } },
  { name: relayName(1_000), sample: relay(1_000) },
  { name: relayName(10_000), sample: relay(10_000), versus: { case: relayName(1_000) } }
])
