/**
 * What the ledger costs (docs/performance.md#ledger):
 *
 * - in the table, a memory `record` on a budget whose store has a
 *   `Ledger.Sink` (one that takes every batch and does nothing), against
 *   the same `record` with none: the entry pushed in the charge's step,
 *   and its share of the fiber that drains the outbox;
 * - Redis's own time per operation of the `batch` script, on a tree with
 *   a ledger and on one without (`INFO commandstats` on a redis-server
 *   this report starts, as bench/scriptTime.ts does): the entry the script
 *   appends to the outbox Stream. The store's own drainer (drain.ts) runs
 *   meanwhile with a sink that does nothing, so the Stream stays drained
 *   as it is in use; its scripts go as `EVAL`, not `EVALSHA`, so Redis
 *   counts them apart, and their time per entry is printed too;
 * - entries per second into PostgreSQL through `PgLedger`'s sink (one
 *   writer, batches of 500), beside the charges per second of a fleet of
 *   4 processes x 64 in flight on one Redis budget measured in the same
 *   run; then the same fleet charging a budget whose ledger goes to
 *   PostgreSQL, with the outbox's length sampled every 100 ms. Skipped,
 *   with a notice, where PostgreSQL does not answer.
 *
 * `npx tsx --expose-gc bench/ledger.ts` runs all three alone (about 40
 * seconds).
 */
import { NodeRedis } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Context, Effect, Exit, Fiber, Layer, Redacted, Schedule, Scope } from "effect"
import * as Redis from "effect/persistence/Redis"
import { SqlClient } from "effect/sql/SqlClient"
import { fileURLToPath, pathToFileURL } from "node:url"
import { batchArguments } from "../src/internal/redis/batch.ts"
import type { Operation } from "../src/internal/redis/batch.ts"
import { makeDrainer } from "../src/internal/redis/drain.ts"
import { batch, ensure } from "../src/internal/redis/scripts.ts"
import { Ledger, maxUsd, usdToNanos } from "../src/index.ts"
import { PgLedger } from "../src/sql-pg.ts"
import { ownRedis } from "../test/support/ownRedis.ts"
import { budgetCases, names as budgetNames, roomyBudget } from "./budget.ts"
import type { Case } from "./case.ts"
import { answers, spawnWorker, type Worker } from "./fleet.ts"
import { median, timeLoop } from "./harness.ts"
import { connect, prefix, url } from "./redis.ts"
import { plan, run } from "./runner.ts"
import { render } from "./table.ts"
import { actual, estimate, ops } from "./workload.ts"

/** A sink that takes every batch and keeps nothing: what the ledger costs short of the sink's own work. */
const noopSink = Ledger.makeSink("no-op", () => Effect.void)

// --- memory: a record with a ledger, in the table ----------------------------------

export const names = {
  record: "record with a ledger (no-op sink)"
} as const

export const ledgerCases: Effect.Effect<ReadonlyArray<Case>, never, Scope.Scope> = Effect.gen(function*() {
  const sink = yield* Effect.orDie(noopSink)
  const budget = yield* Effect.orDie(roomyBudget).pipe(Effect.provideService(Ledger.Sink, sink))
  return [
    // The outbox is drained by the store's fiber whenever the timed one
    // yields; were it not, the outbox would reach its bound and the
    // records fail the case.
    { name: names.record, sample: timeLoop(ops.tiny, () => budget.record(estimate)), versus: { case: budgetNames.record } }
  ]
})

// --- Redis: the script's time with and without a ledger -----------------------------

const scriptRounds = 5
const tree = "{ledger-time}"
const chain = [`${tree}:n:ledger-time`]
const outbox = `${tree}:ledger`
/** The outbox's bound, as a sink's default `maxBacklog` sets it; a drained outbox stays far below it. */
const bound = 100_000
const drainedWithin = "10 seconds"

interface ScriptCase {
  readonly name: string
  /** Operations one call runs, and calls a sample makes. */
  readonly ops: number
  readonly calls: number
  /** Charges a sample makes: the figure is Redis's time per charge. */
  readonly charges: number
  /** Call `i`'s operations. */
  readonly call: (i: number) => ReadonlyArray<Operation>
}

/** Redis's time in microseconds, per command, since the last `CONFIG RESETSTAT`. */
const commandMicros = (stats: string, command: string): number =>
  Number(new RegExp(`cmdstat_${command}:calls=\\d+,usec=(\\d+)`).exec(stats)?.[1] ?? 0)

/**
 * The `Redis` service with every script sent as `EVAL` of its text: the
 * drainer's scripts are then counted under `cmdstat_eval`, apart from the
 * `batch` script's `EVALSHA`. Redis hashes the text of each (it keeps the
 * script compiled), a few microseconds a call that the drain figure
 * includes.
 */
const viaEval = (redis: Redis.Redis["Service"]): Redis.Redis["Service"] => ({
  ...redis,
  eval: (script) => (...params) =>
    redis.send("EVAL", script.lua, String(script.numberOfKeys(...params)), ...script.params(...params).map(String))
})

export const ledgerScriptTimeReport: Effect.Effect<string> = Effect.scoped(Effect.gen(function*() {
  const server = yield* ownRedis()
  const redis = yield* Layer.build(NodeRedis.layer({ url: server.url })).pipe(Effect.map(Context.get(Redis.Redis)))
  const sink = yield* noopSink
  const options = { tree, leaseMillis: 30_000, keepMillis: 60_000, idKeepMillis: 86_400_000 }
  const nanos = usdToNanos(estimate.usd)
  const record: Operation = { _tag: "Record", chain, tokens: estimate.tokens, nanos }
  const records = Array.from({ length: 64 }, () => record)
  const cases: ReadonlyArray<ScriptCase> = [
    { name: "record alone", ops: 1, calls: 2_000, charges: 2_000, call: () => [record] },
    { name: "64 records, per record", ops: 64, calls: 200, charges: 12_800, call: () => records },
    {
      name: "reserve + commit, per cycle",
      ops: 1,
      calls: 4_000,
      charges: 2_000,
      // Even calls reserve a hold, odd ones commit it: each alone, as one
      // operation in flight sends them.
      call: (i) => {
        const id = `h${i >> 1}`
        return i % 2 === 0
          ? [{ _tag: "Reserve", chain, id, tokens: estimate.tokens, nanos }]
          : [{ _tag: "Commit", chain, id, tokens: actual.tokens, nanos: usdToNanos(actual.usd), estimated: false }]
      }
    }
  ]
  /**
   * Redis's microseconds per charge of the batch script, and of the
   * drainer's scripts (0 without a ledger), from an empty server with the
   * budget open; and the outbox's longest length seen, every 100 calls.
   */
  const measure = (c: ScriptCase, ledger: boolean) =>
    Effect.scoped(Effect.gen(function*() {
      yield* redis.send("FLUSHALL")
      yield* redis.eval(ensure)(chain, tree, Number.MAX_SAFE_INTEGER, usdToNanos(maxUsd), "", 0, "", true, "", -1, ledger ? bound : -1, 0, [])
      yield* redis.send("CONFIG", "RESETSTAT")
      const drainer = ledger ? makeDrainer(viaEval(redis), tree, "bench", sink, options.leaseMillis, 5_000) : undefined
      if (drainer !== undefined) yield* Effect.forkScoped(drainer.run)
      let longest = 0
      for (let i = 0; i < c.calls; i++) {
        const replies = yield* redis.eval(batch)(...batchArguments(options, c.call(i)))
        // "ok" for a charge, "c ..." for a commit: anything else (a refusal,
        // the outbox at its bound, a stale hold) would measure another path.
        if (replies.some((reply) => reply !== "ok" && !reply.startsWith("c "))) {
          return yield* Effect.fail(`${c.name}: the script answered ${JSON.stringify(replies.slice(0, 3))}`)
        }
        // As the store does after each charge it sends.
        drainer?.wake()
        if (ledger && i % 100 === 99) longest = Math.max(longest, yield* redis.send<number>("XLEN", outbox))
      }
      if (ledger) {
        yield* Effect.repeat(redis.send<number>("XLEN", outbox), { until: (length) => length === 0, schedule: Schedule.spaced("5 millis") }).pipe(
          Effect.timeoutOrElse({ duration: drainedWithin, orElse: () => Effect.fail(`the outbox was not drained within ${drainedWithin}`) })
        )
      }
      const stats = yield* redis.send<string>("INFO", "commandstats")
      return {
        script: commandMicros(stats, "evalsha") / c.charges,
        drain: commandMicros(stats, "eval") / c.charges,
        longest
      }
    }))
  // Rounds interleave the cases, with and without, so a drift of the machine reaches each alike.
  const perRound: Array<ReadonlyArray<readonly [without: Sample, withLedger: Sample]>> = []
  for (let round = 0; round < scriptRounds; round++) {
    perRound.push(yield* Effect.forEach(cases, (c) => Effect.all([measure(c, false), measure(c, true)])))
  }
  const micros = (n: number) => `${n.toFixed(2).padStart(6)} µs`
  const lines = cases.map((c, i) => {
    const of = (pick: (pair: readonly [Sample, Sample]) => number) => median(perRound.map((round) => pick(round[i]!)))
    const ratio = of(([without, withLedger]) => withLedger.script / without.script)
    return `  ${c.name.padEnd(28)} ${micros(of(([without]) => without.script))} without, ` +
      `${micros(of(([, withLedger]) => withLedger.script))} with a ledger: ${ratio.toFixed(2)}x; ` +
      `drain ${micros(of(([, withLedger]) => withLedger.drain))} a charge, ` +
      `outbox at most ${Math.max(...perRound.map((round) => round[i]![1].longest))} entries`
  })
  return `Redis's own time per charge, with and without a ledger on the tree (INFO commandstats on a private ` +
    `redis-server, 1 call in flight; the outbox drained meanwhile by the store's drainer with a no-op sink, its ` +
    `scripts counted apart as "drain"; median of ${scriptRounds} rounds):\n${lines.join("\n")}`
}).pipe(Effect.catch((why) => Effect.succeed(`Redis's own time per charge with a ledger: not measured: ${why}`))))

interface Sample {
  readonly script: number
  readonly drain: number
  readonly longest: number
}

// --- PostgreSQL: the sink's rate, and a fleet with a ledger ------------------------

const pgUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/test"
/** This run's table: no other run, and no test (`ledger_test_*`), uses it. Dropped at the end. */
const table = `bench_ledger_${process.pid}`

const sinkRounds = 3
const batchesPerRound = 20
const batchSize = 500

/** Entries as a charge makes them: a record of the workload, labelled with a model and a provider. */
const entries = (round: number, n: number): ReadonlyArray<Ledger.Entry> => {
  const at = Date.now()
  return Array.from({ length: n }, (_, i) => ({
    id: `bench-${round}-${i}`,
    budget: "fleet",
    kind: "record" as const,
    tokens: estimate.tokens,
    nanos: usdToNanos(estimate.usd),
    tokensOverage: 0,
    nanosOverage: 0,
    estimated: true,
    labels: { model: "gpt-4o", provider: "openai" },
    at: at + i,
    windowEndsAt: undefined
  }))
}

/** Entries per second through `PgLedger`'s sink, one batch at a time, as one drainer hands them over. */
const sinkRate = (sink: Ledger.Sink["Service"], round: number) =>
  Effect.gen(function*() {
    const all = entries(round, batchesPerRound * batchSize)
    const start = performance.now()
    for (let at = 0; at < all.length; at += batchSize) yield* sink.write(all.slice(at, at + batchSize))
    return all.length / (performance.now() - start) * 1_000
  })

const processes = 4
const inFlight = 64
const started = "60 seconds"
const stuckAfter = "30 seconds"
/** How long the fleet charges the budget with a ledger. */
const ledgerMillis = 2_000
/** How long the outbox may take to drain once the fleet stops. */
const drainLimit = "30 seconds"
const workerPath = fileURLToPath(new URL("./ledgerWorker.ts", import.meta.url))

interface Run {
  readonly ops: number
  readonly refused: number
  readonly millis: number
}

/** Every worker runs `operation` for `millis`, all started by the same write: the runs summed. */
const fleetRun = (workers: ReadonlyArray<Worker>, operation: string, millis: number) =>
  Effect.gen(function*() {
    for (const w of workers) w.child.stdin!.write(`${operation} ${millis}\n`)
    const runs = (yield* answers(workers, stuckAfter, operation)).map((line) => JSON.parse(line) as Run)
    const seconds = Math.max(...runs.map((r) => r.millis)) / 1_000
    const ops = runs.reduce((sum, r) => sum + r.ops, 0)
    const refused = runs.reduce((sum, r) => sum + r.refused, 0)
    return { ops, refused, perSecond: ops / seconds }
  })

const count = (n: number) => Math.round(n).toLocaleString("en-US")
const perSecond = (n: number) => `${count(n)}/s`

/** Whether PostgreSQL answers, within a few seconds. */
const answering = Effect.gen(function*() {
  const sql = yield* SqlClient
  yield* sql`SELECT 1`
}).pipe(Effect.timeout("5 seconds"), Effect.as(true), Effect.orElseSucceed(() => false))

export const ledgerSinkReport: Effect.Effect<string> = Effect.scoped(Effect.gen(function*() {
  const title = "The ledger into PostgreSQL"
  const context = yield* Layer.build(PgClient.layer({ url: Redacted.make(pgUrl), connectTimeout: "2 seconds" })).pipe(
    Effect.option
  )
  const where = pgUrl.replace(/\/\/[^@/]*@/, "//")
  if (context._tag === "None" || !(yield* Effect.provideContext(answering, context.value))) {
    return `${title}: skipped: PostgreSQL does not answer at ${where} (set DATABASE_URL to measure it)`
  }
  const sql = Context.get(context.value, SqlClient)
  // Redis's scope first, so this run's keys go after the workers and the table after them all.
  yield* Effect.addFinalizer(() =>
    Effect.ignore(Effect.andThen(sql`DROP TABLE IF EXISTS ${sql(table)}`, sql`DROP TABLE IF EXISTS ${sql(`${table}_migrations`)}`))
  )
  const redis = yield* connect
  yield* Effect.provideContext(PgLedger.migrate({ table }), context.value)
  const sink = yield* Effect.provideContext(PgLedger.makeSink({ table, batchSize }), context.value)
  yield* sink.write(entries(-1, batchSize)) // untimed: the statement prepared, the connection open
  const sinkRates: Array<number> = []
  for (let round = 0; round < sinkRounds; round++) sinkRates.push(yield* sinkRate(sink, round))
  const sinkPerSecond = median(sinkRates)
  const lines = [
    `${title} (PgLedger's sink, table ${table}):`,
    `  one writer, batches of ${batchSize}, ${count(batchesPerRound * batchSize)} entries a round: ` +
    `${perSecond(sinkPerSecond)} (median of ${sinkRounds} rounds; entries labelled with a model and a provider)`
  ]
  if (typeof redis === "string") return [...lines, `  the fleet: not measured: ${redis}`].join("\n")
  yield* sql`TRUNCATE ${sql(table)}`

  const workers = yield* Effect.forEach(
    Array.from({ length: processes }),
    () => spawnWorker(workerPath, [url, prefix, String(inFlight), pgUrl, table])
  )
  yield* answers(workers, started, "them to start")
  // Untimed: the workers' code compiled and their connections warm, as the fleet's first round is.
  yield* fleetRun(workers, "record", 1_000)
  yield* fleetRun(workers, "cycle", 1_000)
  const record = yield* fleetRun(workers, "record", 1_000)
  const cycle = yield* fleetRun(workers, "cycle", 1_000)
  lines.push(
    `  the fleet (${processes} processes x ${inFlight} in flight, one Redis budget, no ledger): ` +
      `${perSecond(record.perSecond)} records, ${perSecond(cycle.perSecond)} reserve + commit cycles`,
    `  sink / fleet: ${(sinkPerSecond / record.perSecond).toFixed(2)}x its records, ` +
      `${(sinkPerSecond / cycle.perSecond).toFixed(2)}x its cycles (1.00x keeps up)`
  )

  // The same fleet on a budget whose ledger goes to a sink that does
  // nothing, then on one whose ledger goes to PostgreSQL: every process
  // drains the outbox (its store has the sink). The outbox's length is
  // sampled every 100 ms while the fleet charges, then until it is empty.
  const withLedger = (operation: string, budget: string) =>
    Effect.gen(function*() {
      const key = `${prefix}{${budget}}:ledger`
      const lengths: Array<number> = []
      const sampler = yield* Effect.forkScoped(
        Effect.repeat(Effect.flatMap(redis.send<number>("XLEN", key), (n) => Effect.sync(() => void lengths.push(n))), {
          schedule: Schedule.spaced("100 millis")
        })
      )
      const charged = yield* fleetRun(workers, operation, ledgerMillis)
      yield* Fiber.interrupt(sampler)
      const atStop = yield* redis.send<number>("XLEN", key)
      const drainStart = performance.now()
      yield* Effect.repeat(redis.send<number>("XLEN", key), { until: (n) => n === 0, schedule: Schedule.spaced("20 millis") })
        .pipe(
          Effect.timeoutOrElse({ duration: drainLimit, orElse: () => Effect.fail(new Error(`not drained within ${drainLimit}`)) })
        )
      const drainSeconds = (performance.now() - drainStart) / 1_000
      return [
        charged.ops,
        `${perSecond(charged.perSecond)} charged (${(charged.perSecond / record.perSecond).toFixed(2)}x without a ledger), ` +
        `${count(charged.refused)} refused at the outbox's bound (${count(bound)})`,
        `    outbox length every 100 ms: ${summary(lengths)}; ${count(atStop)} when the fleet stopped, empty ` +
        `${drainSeconds.toFixed(2)} s later`
      ] as const
    })
  const [, noopCharged, noopOutbox] = yield* withLedger("noop-record", "fleet-noop")
  lines.push(`  the fleet, ${ledgerMillis} ms of records on a budget with a ledger, no-op sink: ${noopCharged}`, noopOutbox)
  const [pgRecords, pgCharged, pgOutbox] = yield* withLedger("ledger-record", "fleet-ledger")
  const [{ rows }] = yield* sql<{ readonly rows: string }>`SELECT count(*)::text AS rows FROM ${sql(table)}`
  lines.push(
    `  the fleet, ${ledgerMillis} ms of records on a budget with a ledger into PostgreSQL: ${pgCharged}`,
    pgOutbox,
    `    ${count(Number(rows))} entries in PostgreSQL for ${count(pgRecords)} records charged`
  )
  return lines.join("\n")
}).pipe(Effect.catch((error) => Effect.succeed(`The ledger into PostgreSQL: not measured: ${String(error)}`))))

/** The samples of a length: the first few, and the largest. */
const summary = (lengths: ReadonlyArray<number>): string => {
  const shown = lengths.slice(0, 8).map(count).join(", ")
  return `${shown}${lengths.length > 8 ? ", ..." : ""} (at most ${count(Math.max(0, ...lengths))})`
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  Effect.runPromise(Effect.gen(function*() {
    const budgets = yield* Scope.make()
    const [plain, ledgered] = yield* Effect.all([budgetCases, ledgerCases]).pipe(Scope.provide(budgets))
    // `record` alone, without the floor it is judged against in the full table.
    const record = plain.find((c) => c.name === budgetNames.record)!
    const rows = yield* run([{ name: record.name, sample: record.sample }, ...ledgered], plan)
    yield* Scope.close(budgets, Exit.void)
    console.log(render(rows))
    console.log(`\n${yield* ledgerScriptTimeReport}`)
    console.log(`\n${yield* ledgerSinkReport}`)
  }))
}
