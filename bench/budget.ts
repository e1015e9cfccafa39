/**
 * Our own operations, each against the floor that does the same shape of
 * work with no budget: `record` against `Ref.modify`, a scoped hold against
 * an empty scoped `acquireRelease`, `withReservation` against an empty
 * `acquireUseRelease`.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { Budget, maxUsd } from "../src/index.ts"
import type { Case } from "./case.ts"
import { names as floor } from "./floors.ts"
import { timeLoop } from "./harness.ts"
import { actual, estimate, ops } from "./workload.ts"

/**
 * A budget no run can exhaust, so every op takes the success path. A cap
 * still applies on both axes: the check is the same as with a tight one.
 */
export const roomyBudget = Budget.make({ tokenCap: Number.MAX_SAFE_INTEGER, usdCap: maxUsd })

export const names = {
  record: "record",
  scoped: "scoped reserve + commit",
  bracket: "withReservation + commit"
} as const

export const budgetCases: Effect.Effect<ReadonlyArray<Case>, never, Scope.Scope> = Effect.gen(function*() {
  const budget = yield* Effect.orDie(roomyBudget)
  return [
    {
      name: names.record,
      sample: timeLoop(ops.tiny, () => budget.record(estimate)),
      versus: { case: floor.ref, target: 1.0 }
    },
    {
      name: names.scoped,
      sample: timeLoop(ops.small, () => Effect.scoped(Effect.flatMap(budget.reserve(estimate), (r) => r.commit(actual)))),
      versus: { case: floor.scoped, target: 2.0 }
    },
    {
      name: names.bracket,
      sample: timeLoop(ops.small, () => budget.withReservation(estimate, (r) => r.commit(actual))),
      versus: { case: floor.bracket, target: 2.0 }
    }
  ]
})
