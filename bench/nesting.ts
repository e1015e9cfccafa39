/**
 * Nesting: `record` and a scoped reserve + commit on a budget at depth 1
 * (a root), 3 and 5, every level capped, so every level is checked and
 * charged. A charge touches each level once: the cost may grow at most
 * linearly with depth, so depth d is allowed d times the cost of depth 1.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { Budget, type BudgetService, maxUsd } from "../src/index.ts"
import type { Case } from "./case.ts"
import { timeLoop } from "./harness.ts"
import { actual, estimate, ops } from "./workload.ts"

const depths = [1, 3, 5] as const

/** A budget `depth` levels deep, each level with caps no run can exhaust. */
const atDepth = (depth: number): Effect.Effect<BudgetService, never, Scope.Scope> =>
  Effect.gen(function*() {
    const caps = { tokenCap: Number.MAX_SAFE_INTEGER, usdCap: maxUsd }
    let budget = yield* Effect.orDie(Budget.make({ name: "level-1", ...caps }))
    for (let level = 2; level <= depth; level++) budget = yield* Effect.orDie(budget.child(`level-${level}`, caps))
    return budget
  })

const name = (what: string, depth: number) => `${what} at depth ${depth}`

export const nestingCases: Effect.Effect<ReadonlyArray<Case>, never, Scope.Scope> = Effect.gen(function*() {
  const budgets = yield* Effect.forEach(depths, atDepth)
  return depths.flatMap((depth, i): ReadonlyArray<Case> => {
    const budget = budgets[i]!
    const versus = (what: string) => depth === 1 ? undefined : { case: name(what, 1), target: depth }
    const record: Case = { name: name("record", depth), sample: timeLoop(ops.tiny, () => budget.record(estimate)) }
    const cycle: Case = {
      name: name("scoped reserve + commit", depth),
      sample: timeLoop(ops.small, () => Effect.scoped(Effect.flatMap(budget.reserve(estimate), (r) => r.commit(actual))))
    }
    const recordVersus = versus("record")
    const cycleVersus = versus("scoped reserve + commit")
    return [
      recordVersus === undefined ? record : { ...record, versus: recordVersus },
      cycleVersus === undefined ? cycle : { ...cycle, versus: cycleVersus }
    ]
  })
})
