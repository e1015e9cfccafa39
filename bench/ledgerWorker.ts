/**
 * One process of the ledger's fleet (bench/ledger.ts): opens two budgets
 * in Redis, the fleet's budget as bench/fleetWorker.ts opens it and one
 * whose store has `PgLedger`'s sink in its context (so its tree keeps a
 * ledger, drained by this process into PostgreSQL), and serves `record`,
 * `cycle`, `ledger-record`, `ledger-cycle` and `noop-record`
 * (bench/workerLoop.ts), counting as refused a charge refused because the
 * ledger's outbox was full.
 */
import { NodeRedis } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted } from "effect"
import { Budget, Ledger, LedgerBacklogFull, maxUsd } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { PgLedger } from "../src/sql-pg.ts"
import { actual, estimate } from "./workload.ts"
import { refused, runWorker, serve } from "./workerLoop.ts"

const [url, prefix, inFlightArg, pgUrl, table] = process.argv.slice(2)

/** A charge refused because the ledger's outbox is at its bound counts as refused; any other failure ends the run. */
const countRefused = <A, E>(op: Effect.Effect<A, E>) =>
  Effect.catchIf(
    op,
    (error) => (error as { readonly cause?: unknown }).cause instanceof LedgerBacklogFull,
    () => Effect.sync(() => void refused.count++)
  )

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
  yield* serve(operations, Number(inFlightArg))
})

const Live = Layer.mergeAll(
  Layer.orDie(NodeRedis.layer({ url: url! })),
  Layer.orDie(PgClient.layer({ url: Redacted.make(pgUrl!) }))
)

runWorker(Effect.scoped(Effect.provide(program, Live)))
