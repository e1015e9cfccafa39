/**
 * `npm run bench`: one process, one table. Every figure is also a ratio to a
 * floor measured in the same run, since machines are noisy and only the
 * ratios carry from one to another.
 */
import { Effect, Exit, Scope } from "effect"
import { budgetCases } from "./budget.ts"
import { contentionCases } from "./contention.ts"
import { drainCases } from "./drain.ts"
import { fleetReport } from "./fleet.ts"
import { floors } from "./floors.ts"
import { ledgerCases, ledgerScriptTimeReport, ledgerSinkReport } from "./ledger.ts"
import { memoryReport } from "./memory.ts"
import { nestingCases } from "./nesting.ts"
import { peerCases } from "./peers.ts"
import { rateCases } from "./rates.ts"
import { redisCases, redisPlan } from "./redis.ts"
import { redisAloneReport } from "./redisAlone.ts"
import { redisCpuReport } from "./redisCpu.ts"
import { renewalReport } from "./renewal.ts"
import { scriptTimeReport } from "./scriptTime.ts"
import { plan, run } from "./runner.ts"
import { render } from "./table.ts"

const program = Effect.gen(function*() {
  // The budgets live in a scope of their own: cases run with no Scope in
  // their context, as the floors' do, so neither pays for a deeper one.
  const budgets = yield* Scope.make()
  const groups = yield* Effect.all([
    floors,
    budgetCases,
    ledgerCases,
    peerCases,
    rateCases,
    contentionCases,
    drainCases,
    nestingCases
  ]).pipe(
    Scope.provide(budgets)
  )
  const inMemoryRows = yield* run(groups.flat(), plan)
  // Redis after, with a plan and a run of its own: its client's sockets and
  // timers never run beside an in-memory sample. The client lives in the
  // budgets' scope, so it outlives the cases.
  const redis = yield* Scope.provide(redisCases, budgets)
  const rows = [...inMemoryRows, ...yield* run(redis, redisPlan)]
  yield* Scope.close(budgets, Exit.void)
  console.log(render(rows))
  console.log(`\n${yield* memoryReport}`)
  console.log(`\n${yield* renewalReport}`)
  console.log(`\n${yield* redisCpuReport}`)
  console.log(`\n${yield* redisAloneReport}`)
  console.log(`\n${yield* scriptTimeReport}`)
  console.log(`\n${yield* ledgerScriptTimeReport}`)
  console.log(`\n${yield* fleetReport}`)
  console.log(`\n${yield* ledgerSinkReport}`)
  console.log(
    `\nnode ${process.version}; ns/op is the median of ${plan.rounds} rounds (Redis: ${redisPlan.rounds}), ` +
      `ratio the median per-round ratio to "vs".`
  )
  const over = rows.filter((row) => {
    const target = row.versus?.target
    return target !== undefined && row.ratio !== undefined && row.ratio > target
  })
  if (over.length > 0) console.log(`over target: ${over.map((row) => `${row.case.name} (vs ${row.versus!.case})`).join(", ")}`)
  const failed = rows.filter((row) => row.failure !== undefined)
  // A case with several comparisons fails on each of its rows: say it once.
  for (const line of new Set(failed.map((row) => `failed: ${row.case.name}: ${row.failure}`))) console.log(line)
  // Over a target is a finding; a case that cannot run is a broken bench.
  if (failed.length > 0) process.exitCode = 1
})

Effect.runPromise(program)
