/**
 * One process of the ledger's fleet (bench/ledger.ts): opens two budgets
 * in Redis, the fleet's budget as bench/fleetWorker.ts opens it and one
 * whose store has `PgLedger`'s sink in its context (so its tree keeps a
 * ledger, drained by this process into PostgreSQL), and prints `ready`.
 * Then, for each line `<operation> <millis>` on stdin (`record`, `cycle`,
 * `ledger-record` or `ledger-cycle`), keeps `inFlight` of that operation
 * going for `millis` and prints how many finished, how many were refused
 * because the ledger's outbox was full, and in how long, as one JSON line.
 * It exits when its stdin closes, so it never outlives the bench.
 */
import { NodeRedis } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted } from "effect"
import { createInterface } from "node:readline"
import { Budget, Ledger, LedgerBacklogFull, maxUsd } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { PgLedger } from "../src/sql-pg.ts"
import { actual, estimate } from "./workload.ts"

const [url, prefix, inFlightArg, pgUrl, table] = process.argv.slice(2)
const inFlight = Number(inFlightArg)

const commands = createInterface({ input: process.stdin })[Symbol.asyncIterator]()

let refused = 0

/** A charge refused because the ledger's outbox is at its bound counts as refused; any other failure ends the run. */
const countRefused = <A, E>(op: Effect.Effect<A, E>) =>
  Effect.catchIf(
    op,
    (error) => (error as { readonly cause?: unknown }).cause instanceof LedgerBacklogFull,
    () => Effect.sync(() => void refused++)
  )

/** Finished runs of `op`, `inFlight` at a time, until `millis` have passed. */
const runFor = (op: Effect.Effect<unknown, unknown>, millis: number) =>
  Effect.suspend(() => {
    const start = performance.now()
    let ops = 0
    refused = 0
    const loop = Effect.whileLoop({
      while: () => performance.now() - start < millis,
      body: () => op,
      step: () => void ops++
    })
    return Effect.forEach(Array.from({ length: inFlight }), () => loop, { concurrency: "unbounded", discard: true }).pipe(
      Effect.map(() => ({ ops: ops - refused, refused, millis: performance.now() - start }))
    )
  })

const cycle = (budget: Budget["Service"]) => Effect.scoped(Effect.flatMap(budget.reserve(estimate), (r) => r.commit(actual)))

const program = Effect.gen(function*() {
  const options = { tokenCap: Number.MAX_SAFE_INTEGER, usdCap: maxUsd }
  const plain = yield* RedisBudget.make({ name: "fleet", ...options }, { prefix: prefix! })
  const sink = yield* PgLedger.makeSink({ table })
  const ledgered = yield* RedisBudget.make({ name: "fleet-ledger", ...options }, { prefix: prefix! }).pipe(
    Effect.provideService(Ledger.Sink, sink)
  )
  const noop = yield* Ledger.makeSink("no-op", () => Effect.void)
  const noopBudget = yield* RedisBudget.make({ name: "fleet-noop", ...options }, { prefix: prefix! }).pipe(
    Effect.provideService(Ledger.Sink, noop)
  )
  const operations: Record<string, Effect.Effect<unknown, unknown>> = {
    "noop-record": countRefused(noopBudget.record(estimate)),
    record: plain.record(estimate),
    cycle: cycle(plain),
    "ledger-record": countRefused(ledgered.record(estimate)),
    "ledger-cycle": countRefused(cycle(ledgered))
  }
  console.log("ready")
  while (true) {
    const command = yield* Effect.promise(() => commands.next())
    if (command.done === true) return
    const [operation, millis] = command.value.split(" ")
    const op = operations[operation!]
    if (op === undefined) return yield* Effect.die(new Error(`unknown operation: ${command.value}`))
    console.log(JSON.stringify(yield* runFor(op, Number(millis))))
  }
})

const Live = Layer.mergeAll(
  Layer.orDie(NodeRedis.layer({ url: url! })),
  Layer.orDie(PgClient.layer({ url: Redacted.make(pgUrl!) }))
)

Effect.runPromise(Effect.scoped(Effect.provide(program, Live))).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
