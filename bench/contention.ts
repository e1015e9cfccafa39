/**
 * Contention: the same number of scoped reserve + commit cycles on one
 * budget, done by one fiber in a row or by 1,000 fibers at once. The
 * counters are plain numbers changed in one synchronous step, so sharing
 * them should cost nothing extra: no lock to queue on, no transaction to
 * retry.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import type { Budget } from "../src/index.ts"
import { roomyBudget } from "./budget.ts"
import type { Case } from "./case.ts"
import { repeat, timeLoop, timeOnce } from "./harness.ts"
import { actual, estimate } from "./workload.ts"

const fibers = 1000
const perFiber = 100
const total = fibers * perFiber

export const names = {
  alone: "1 fiber, scoped reserve + commit",
  crowd: `${fibers} fibers, scoped reserve + commit`
} as const

const cycle = (budget: Budget["Service"]) =>
  Effect.scoped(Effect.flatMap(budget.reserve(estimate), (r) => r.commit(actual)))

export const contentionCases: Effect.Effect<ReadonlyArray<Case>, never, Scope.Scope> = Effect.gen(function*() {
  const budget = yield* Effect.orDie(roomyBudget)
  // Each fiber runs past the runtime's 2,048-op slice, so they yield to one
  // another mid-cycle, some while holding a reservation.
  const crowd = Effect.forEach(
    Array.from({ length: fibers }),
    () => repeat(perFiber, () => cycle(budget)),
    { concurrency: fibers, discard: true }
  )
  return [
    { name: names.alone, sample: timeLoop(total, () => cycle(budget)) },
    { name: names.crowd, sample: timeOnce(total, crowd), versus: { case: names.alone, target: 1.5 } }
  ]
})
