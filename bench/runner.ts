/**
 * Runs every case in rounds: each round takes one sample of every case in
 * turn, so a slow stretch of the machine hits floors and cases alike. A
 * ratio is the median of its per-round ratios: a floor and its case are
 * measured moments apart, which cancels most drift.
 */
import { Effect } from "effect"
import { type Case, versusOf } from "./case.ts"
import { median } from "./harness.ts"
import type { Row } from "./table.ts"

export interface Plan {
  /** Untimed rounds first, for the JIT to settle. */
  readonly warmup: number
  readonly rounds: number
}

/** The plan of the in-memory cases. */
export const plan: Plan = { warmup: 2, rounds: 15 }

export const run = (cases: ReadonlyArray<Case>, plan: Plan): Effect.Effect<ReadonlyArray<Row>> =>
  Effect.gen(function*() {
    const samples = new Map<string, Array<number>>(cases.map((c) => [c.name, []]))
    // A case that fails once is not sampled again; the rest still run.
    const failures = new Map<string, string>()
    for (let round = 0; round < plan.warmup + plan.rounds; round++) {
      for (const c of cases) {
        if (failures.has(c.name)) continue
        const result = yield* Effect.result(c.sample)
        if (result._tag === "Failure") failures.set(c.name, describe(result.failure))
        else if (round >= plan.warmup) samples.get(c.name)!.push(result.success)
      }
    }
    const of = (name: string): Array<number> => {
      const found = samples.get(name)
      if (found === undefined) throw new Error(`no case named "${name}"`)
      return found
    }
    // A case judged against several others is a row for each, one sampling.
    return cases.flatMap((c) =>
      versusOf(c).map((versus): Row => {
        const failure = failures.get(c.name) ?? (versus && failures.get(versus.case))
        if (failure !== undefined) return { case: c, versus, nsPerOp: undefined, ratio: undefined, failure }
        const own = of(c.name)
        const base = versus === undefined ? undefined : of(versus.case)
        return {
          case: c,
          versus,
          nsPerOp: median(own),
          ratio: base === undefined ? undefined : median(own.map((ns, i) => ns / base[i]!)),
          failure: undefined
        }
      })
    )
  })

const describe = (error: unknown): string => error instanceof Error ? error.message : String(error)
