/**
 * One process of the multi-process tests: opens the shared budget in Redis
 * (its caps from the arguments, else 200,000 tokens and $0.2) and either runs reserve + commit cycles from many fibers (`cycles`), takes
 * holds and keeps them until it is killed (`hold`), waits for a hold of
 * `rounds` tokens and keeps it (`wait`), or, on a budget with a rate of
 * `tokenCap` tokens a second (`rated`), waits for holds from many fibers and
 * notes when on Redis's clock each was admitted. Prints one JSON line: what
 * it charged, that it holds, or its admissions.
 *
 * `ledger`: the budget's store has the PostgreSQL ledger sink
 * (LEDGER_TABLE, made beforehand, on 127.0.0.1:LEDGER_PG_PORT: the test's
 * proxy), so this process drains the tree's outbox too; many fibers make
 * labelled charges of every kind (support/ledgerMix.ts) on the budget and
 * its child `team` until SIGUSR2. Prints `{"charging":true}` once each
 * fiber could have charged once, then, after SIGUSR2 and once every charge
 * is settled, what it charged, the entries its sink took, and the warnings
 * it logged (kept, not printed: the sink's outages are expected); then
 * keeps draining until it is killed. Errors go to stderr.
 *
 * Redis is REDIS_URL (or 127.0.0.1:6379); with WORKER_REDIS_CLUSTER_NODES
 * (`host:port,...`) it is that Redis Cluster, through `NodeRedisCluster`.
 */
import { NodeRedis } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Logger, Random } from "effect"
import type { Duration, Scope } from "effect"
import * as Redis from "effect/persistence/Redis"
import { Budget, Ledger, usdFromNanos, usdToNanos } from "../../src/index.ts"
import type { BudgetOptions } from "../../src/index.ts"
import { NodeRedisCluster, RedisBudget } from "../../src/redis.ts"
import { PgLedger } from "../../src/sql-pg.ts"
import { chargeAtRandom, nothingCharged } from "./ledgerMix.ts"

const [mode, prefix, name, fibersArg, roundsArg, leaseTtl, tokenCap, usdCap] = process.argv.slice(2)
const fibers = Number(fibersArg)
const rounds = Number(roundsArg)

const cycles = Effect.gen(function*() {
  const budget = yield* Budget
  const charged = { tokens: 0, nanos: 0, refused: 0 }
  yield* Effect.forEach(Array.from({ length: fibers }), () =>
    Effect.forEach(Array.from({ length: rounds }), () =>
      Effect.gen(function*() {
        const tokens = yield* Random.nextIntBetween(1, 50)
        const nanos = yield* Random.nextIntBetween(1, 50_000)
        yield* Effect.scoped(Effect.gen(function*() {
          const hold = yield* budget.reserve({ tokens, usd: usdFromNanos(nanos) })
          yield* Effect.sleep(yield* Random.nextIntBetween(0, 3))
          const actualTokens = yield* Random.nextIntBetween(0, tokens)
          const actualNanos = yield* Random.nextIntBetween(0, nanos)
          const settlement = yield* hold.commit({ tokens: actualTokens, usd: usdFromNanos(actualNanos) })
          charged.tokens += settlement.tokens
          charged.nanos += usdToNanos(settlement.usd)
        })).pipe(Effect.catchTag("BudgetExceeded", () => Effect.sync(() => charged.refused++)))
      }), { discard: true }), { concurrency: "unbounded", discard: true })
  console.log(JSON.stringify(charged))
})

const hold = Effect.gen(function*() {
  const budget = yield* Budget
  yield* Effect.forEach(Array.from({ length: fibers }), () => budget.reserve({ tokens: 10, usd: 0.01 }), {
    concurrency: 64,
    discard: true
  })
  console.log(JSON.stringify({ holding: fibers }))
  return yield* Effect.never
})

const wait = Effect.gen(function*() {
  const budget = yield* Budget
  yield* budget.reserve({ tokens: rounds }, { onExceeded: "wait" })
  console.log(JSON.stringify({ holding: 1 }))
  return yield* Effect.never
})

// Each admission, [Redis's time in ms just after it, tokens].
const rated = Effect.gen(function*() {
  const budget = yield* Budget
  const redis = yield* Redis.Redis
  const admissions: Array<readonly [number, number]> = []
  yield* Effect.forEach(Array.from({ length: fibers }), () =>
    Effect.forEach(Array.from({ length: rounds }), () =>
      Effect.gen(function*() {
        const tokens = yield* Random.nextIntBetween(1, 50)
        yield* budget.withReservation({ tokens }, (hold) =>
          Effect.gen(function*() {
            const [seconds, micros] = yield* redis.send<[string, string]>("TIME")
            admissions.push([Number(seconds) * 1000 + Math.floor(Number(micros) / 1000), tokens])
            return yield* hold.commit()
          }), { onExceeded: "wait" })
      }), { discard: true }), { concurrency: "unbounded", discard: true })
  console.log(JSON.stringify(admissions))
})

// What the ledger mode's sink took, and what it logged at Warn.
const handed = { entries: 0, batches: 0 }
const warnings: Array<string> = []

const ledger = Effect.gen(function*() {
  const budget = yield* Budget
  const team = yield* budget.child("team")
  const worker = process.env["WORKER_LABEL"] ?? String(process.pid)
  const charged = { ...nothingCharged(), refused: 0 }
  let stopping = false
  process.on("SIGUSR2", () => {
    stopping = true
  })
  let charges = 0
  yield* Effect.forEach(Array.from({ length: fibers }, (_, fiber) => fiber), (fiber) =>
    Effect.gen(function*() {
      for (let request = 0; !stopping; request++) {
        const labels = { worker, fiber: String(fiber), request: `${worker}-${fiber}-${request}` }
        const result = yield* chargeAtRandom([budget, team], labels, 20).pipe(
          Effect.catchTag("BudgetExceeded", () => Effect.sync(() => (charged.refused++, nothingCharged())))
        )
        charged.tokens += result.tokens
        charged.nanos += result.nanos
        charged.entries += result.entries
        if (++charges === fibers) console.log(JSON.stringify({ charging: true }))
        yield* Effect.sleep(yield* Random.nextIntBetween(0, 5))
      }
    }), { concurrency: "unbounded", discard: true })
  console.log(JSON.stringify({ worker, ...charged, handed, warnings }))
  return yield* Effect.never
})

/** The PostgreSQL sink through the test's proxy, counting what it took. */
const PgSinkLive: Layer.Layer<Ledger.Sink> = Layer.effect(
  Ledger.Sink,
  Effect.map(Effect.service(Ledger.Sink), (sink) =>
    Ledger.Sink.of({
      ...sink,
      write: (entries) =>
        Effect.tap(sink.write(entries), () =>
          Effect.sync(() => {
            handed.entries += entries.length
            handed.batches++
          }))
    }))
).pipe(
  Layer.provide(PgLedger.layer({ table: process.env["LEDGER_TABLE"] })),
  Layer.provide(PgClient.layer({
    host: "127.0.0.1",
    port: Number(process.env["LEDGER_PG_PORT"] ?? 5432),
    username: "postgres",
    database: "test",
    connectTimeout: "2 seconds"
  })),
  Layer.orDie
)

/** Warnings kept for the result line, errors to stderr, the rest dropped: stdout carries the results. */
const QuietLogger = Logger.layer([
  Logger.make(({ logLevel, message }) => {
    const text = (Array.isArray(message) ? message : [message]).join(" ")
    if (logLevel === "Warn") warnings.push(text)
    else if (logLevel === "Error" || logLevel === "Fatal") console.error(`worker ${process.pid}: ${logLevel} ${text}`)
  })
])

const clusterNodes = process.env["WORKER_REDIS_CLUSTER_NODES"]
const RedisLive: Layer.Layer<Redis.Redis, Redis.RedisError> = clusterNodes
  ? NodeRedisCluster.layer({ rootNodes: clusterNodes.split(",").map((node) => ({ url: `redis://${node}` })) })
  : NodeRedis.layer({ url: process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379" })

const options: BudgetOptions = mode === "rated"
  ? { name: name!, rate: { tokens: Number(tokenCap), per: "1 second" } }
  : { name: name!, tokenCap: Number(tokenCap ?? 200_000), usdCap: Number(usdCap ?? 0.2) }
const RedisOrDie = Layer.orDie(RedisLive)
const BudgetLive = RedisBudget.layer(options, { prefix: prefix!, leaseTtl: (leaseTtl ?? "30 seconds") as Duration.Input }).pipe(
  Layer.provide(RedisOrDie),
  Layer.provide(mode === "ledger" ? PgSinkLive : Layer.empty)
)
const program: Effect.Effect<void, unknown, Budget | Redis.Redis | Scope.Scope> = mode === "hold"
  ? hold
  : mode === "wait"
  ? wait
  : mode === "rated"
  ? rated
  : mode === "ledger"
  ? ledger
  : cycles

Effect.runPromise(
  Effect.scoped(Effect.provide(program, Layer.merge(BudgetLive, RedisOrDie))).pipe(
    Effect.provide(mode === "ledger" ? QuietLogger : Layer.empty)
  )
).catch((error) => {
  console.error(error)
  process.exit(1)
})
