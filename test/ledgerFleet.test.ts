/**
 * The ledger end to end, into PostgreSQL: a fleet of processes on one Redis
 * budget, one of them SIGKILLed and the sink's connection cut mid-run; lost
 * replies on Redis with retried charges; and the memory store with fibers
 * interrupted at random. Each time, once the outbox is empty, the table sums
 * to the budget's counters exactly, each entry is there once, and each
 * carries its labels. The sink's connection goes through a TCP proxy of the
 * test's own (support/postgres.ts): the shared server is never touched.
 */
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Metric, Option, Random, Scope } from "effect"
import * as Redis from "effect/persistence/Redis"
import { SqlClient } from "effect/sql/SqlClient"
import type { ChildProcess } from "node:child_process"
import { Budget, Ledger, usdToNanos } from "../src/index.ts"
import type { BudgetOptions } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { PgLedger } from "../src/sql-pg.ts"
import { BudgetStoreContract } from "../src/testing.ts"
import { chargeAtRandom, nothingCharged } from "./support/ledgerMix.ts"
import { capturingLogs, type Line } from "./support/logs.ts"
import { ownRedis } from "./support/ownRedis.ts"
import { eventually } from "./support/poll.ts"
import { available as pgAvailable, makeProxy, PgLive, testTable } from "./support/postgres.ts"
import { available as redisAvailable, RedisLive, testPrefix } from "./support/redis.ts"
import { worker } from "./support/worker.ts"

/** A client of the shared server, for the test's own reads, as long as the test's scope. */
const testSql = Effect.map(Layer.build(PgLive({ maxConnections: 2 })), (context) => Context.get(context, SqlClient))

interface Sums {
  readonly entries: number
  readonly ids: number
  readonly tokens: number
  readonly nanos: number
}

/** The table's entries: how many, how many ids, and their sums, read exactly. */
const sumsOf = (sql: SqlClient, table: string) =>
  Effect.map(
    sql<{ readonly entries: string; readonly ids: string; readonly tokens: string; readonly nanos: string }>`SELECT
  count(*)::text AS entries, count(DISTINCT id)::text AS ids,
  coalesce(sum(tokens), 0)::text AS tokens, coalesce(sum(nanos), 0)::text AS nanos
FROM ${sql(table)}`,
    ([row]): Sums => ({
      entries: Number(row!.entries),
      ids: Number(row!.ids),
      tokens: Number(row!.tokens),
      nanos: Number(row!.nanos)
    })
  )

const countOf = (sql: SqlClient, table: string) => Effect.map(sumsOf(sql, table), (sums) => sums.entries)

/** How many rows of `table` have labels named otherwise than exactly `names`. */
const mislabelled = (sql: SqlClient, table: string, names: ReadonlyArray<string>) =>
  Effect.map(
    sql<{ readonly n: string }>`SELECT count(*)::text AS n FROM ${sql(table)}
WHERE (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(labels) AS k) IS DISTINCT FROM ${[...names].sort()}::text[]`,
    ([row]) => Number(row!.n)
  )

/** The warnings a sink's outage logs: one as each batch is first refused. */
const sinkRefused = /^Ledger sink "postgresql:ledger_test_\d+_\d+" did not take a batch: /

const exited = (child: ChildProcess) =>
  Effect.promise(() =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve()
      else child.once("exit", () => resolve())
    })
  )

interface WorkerReport {
  readonly worker: string
  readonly tokens: number
  readonly nanos: number
  readonly entries: number
  readonly refused: number
  readonly handed: { readonly entries: number; readonly batches: number }
  readonly warnings: ReadonlyArray<string>
}

describe.runIf(redisAvailable && pgAvailable)("the ledger end to end, into PostgreSQL", () => {
  it.live(
    "4 processes x 250 fibers, one SIGKILLed, the sink's connection cut: the table sums to the counters, each entry once, labelled",
    () =>
      Effect.gen(function*() {
        const table = testTable()
        const sql = yield* testSql
        // made before the workers start: their layers find it made
        yield* PgLedger.migrate({ table }).pipe(Effect.provideService(SqlClient, sql))
        const proxy = yield* makeProxy
        const prefix = testPrefix("fleet")
        const redis = Context.get(yield* Layer.build(RedisLive), Redis.Redis)
        // The test's own look at the budget: no sink, so it drains nothing.
        const caps = { tokenCap: 1_000_000_000, usdCap: 1_000 }
        const budget = yield* RedisBudget.make({ name: "fleet", ...caps }, { prefix, leaseTtl: "2 seconds" }).pipe(
          Effect.provideService(Redis.Redis, redis)
        )
        const outbox = `${prefix}{fleet}:ledger`
        const waiting = redis.send<number>("XLEN", outbox)
        // XPENDING's summary: how many entries were taken and not acknowledged, and by how many drainers
        const pendingSummary = Effect.map(
          redis.send<readonly [number, unknown, unknown, ReadonlyArray<unknown> | null]>("XPENDING", outbox, "drain"),
          ([n, , , consumers]) => ({ entries: Number(n), drainers: consumers?.length ?? 0 })
        )
        const pending = Effect.map(pendingSummary, (summary) => summary.entries)

        const workers = ["w0", "w1", "w2", "w3"].map((label) =>
          worker(
            ["ledger", prefix, "fleet", "250", "0", "2 seconds", String(caps.tokenCap), String(caps.usdCap)],
            { LEDGER_TABLE: table, LEDGER_PG_PORT: String(proxy.port), WORKER_LABEL: label }
          )
        )
        yield* Effect.addFinalizer(() => Effect.sync(() => workers.forEach((w) => w.child.kill("SIGKILL"))))
        yield* Effect.promise(() => Promise.all(workers.map((w) => w.line(0))))
        yield* eventually(
          "every worker's entries reached the table through the proxy",
          Effect.map(
            sql<{ readonly n: number }>`SELECT count(DISTINCT labels ->> 'worker')::int AS n FROM ${sql(table)}`,
            ([row]) => row!.n === 4
          ),
          { every: "50 millis", within: "20 seconds" }
        )

        // The sink's connection cut, new ones refused: entries wait in Redis.
        yield* proxy.cut
        const atCut = yield* waiting
        yield* eventually("entries pile up in the outbox", Effect.map(waiting, (n) => n >= atCut + 2_000), {
          every: "20 millis",
          within: "20 seconds"
        })
        // A process killed mid-run: holds in flight, entries not yet drained,
        // maybe a batch it took and never handed over.
        // each process's drainer holds a batch the sink does not take: the
        // killed one's stays pending until another takes it over
        yield* eventually("every drainer holds a batch", Effect.map(pendingSummary, (p) => p.drainers === 4), {
          every: "20 millis",
          within: "20 seconds"
        })
        const [victim, ...survivors] = workers
        victim!.child.kill("SIGKILL")
        yield* exited(victim!.child)
        const atKill = yield* waiting
        yield* eventually("more entries pile up", Effect.map(waiting, (n) => n >= atKill + 1_000), {
          every: "20 millis",
          within: "20 seconds"
        })
        yield* proxy.restore
        const atRestore = yield* countOf(sql, table)
        yield* eventually("the sink takes entries again", Effect.map(countOf(sql, table), (n) => n > atRestore), {
          every: "50 millis",
          within: "30 seconds"
        })

        survivors.forEach((w) => w.child.kill("SIGUSR2"))
        const reports = yield* Effect.promise(() =>
          Promise.all(survivors.map((w) => w.line(1).then((line) => JSON.parse(line) as WorkerReport)))
        )
        // The killed process's holds come back when their lease runs out (a
        // snapshot gives them back), each an `expired` entry.
        yield* eventually(
          "every hold settled or expired",
          Effect.map(budget.snapshot, (s) => s.tokensReserved === 0 && s.usdReserved === 0),
          { every: "100 millis", within: "15 seconds" }
        )
        yield* eventually(
          "the outbox drained and every batch acknowledged",
          Effect.map(Effect.all([waiting, pending]), ([n, p]) => n === 0 && p === 0),
          { every: "50 millis", within: "30 seconds" }
        )

        // Every charge counted once: the table sums to the budget's counters,
        // and holds each entry the scripts appended, once.
        const snap = yield* budget.snapshot
        const sums = yield* sumsOf(sql, table)
        assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved], [0, 0])
        assert.deepStrictEqual(
          { tokens: sums.tokens, nanos: sums.nanos },
          { tokens: snap.tokensUsed, nanos: usdToNanos(snap.usdUsed) },
          "the ledger sums to the budget's counters"
        )
        assert.strictEqual(sums.ids, sums.entries, "no id twice")
        const info = yield* redis.send<unknown>("XINFO", "STREAM", outbox)
        // the driver answers a map (RESP3) or a flat array (RESP2)
        const added = Number(
          Array.isArray(info) ? info[info.indexOf("entries-added") + 1] : (info as Record<string, unknown>)["entries-added"]
        )
        assert.strictEqual(sums.entries, added, "each entry appended to the outbox is in the table")

        // Each survivor's charges, as it counted them from its settlements:
        // none missing, none extra. The killed one's are the rest.
        const byWorker = yield* sql<
          { readonly worker: string; readonly kind: string; readonly entries: string; readonly tokens: string; readonly nanos: string }
        >`SELECT labels ->> 'worker' AS worker, kind, count(*)::text AS entries,
  sum(tokens)::text AS tokens, sum(nanos)::text AS nanos
FROM ${sql(table)} GROUP BY 1, 2 ORDER BY 1, 2`
        const of = (label: string, kinds: ReadonlyArray<string>) =>
          byWorker.filter((row) => row.worker === label && kinds.includes(row.kind)).reduce(
            (sum, row) => ({
              entries: sum.entries + Number(row.entries),
              tokens: sum.tokens + Number(row.tokens),
              nanos: sum.nanos + Number(row.nanos)
            }),
            nothingCharged()
          )
        for (const report of reports) {
          assert.deepStrictEqual(
            of(report.worker, ["record", "commit"]),
            { entries: report.entries, tokens: report.tokens, nanos: report.nanos },
            `${report.worker}'s charges`
          )
          assert.strictEqual(of(report.worker, ["expired"]).entries, 0, `${report.worker} let no hold expire`)
          assert.isAbove(report.handed.entries, 0, `${report.worker} drained`)
          assert.isAtLeast(report.warnings.length, 1, `${report.worker} saw the outage`)
          for (const warning of report.warnings) assert.match(warning, sinkRefused)
        }
        const killed = of("w0", ["record", "commit"])
        const survived = reports.reduce((sum, r) => ({ tokens: sum.tokens + r.tokens, nanos: sum.nanos + r.nanos }), {
          tokens: 0,
          nanos: 0
        })
        assert.deepStrictEqual(
          { tokens: killed.tokens, nanos: killed.nanos },
          { tokens: snap.tokensUsed - survived.tokens, nanos: usdToNanos(snap.usdUsed) - survived.nanos },
          "the killed worker's entries are what the budget counted beyond the survivors'"
        )
        assert.isAbove(killed.entries, 0)
        // its holds in flight: zero charges, with their labels
        const expired = of("w0", ["expired"])
        assert.isAbove(expired.entries, 0, "the killed worker's holds expired")
        assert.deepStrictEqual([expired.tokens, expired.nanos], [0, 0])
        assert.deepStrictEqual(
          [...new Set(byWorker.map((row) => row.worker))].sort(),
          ["w0", "w1", "w2", "w3"],
          "every entry names its worker"
        )

        // Labels: each entry exactly the charge's, its request its own.
        assert.strictEqual(yield* mislabelled(sql, table, ["worker", "fiber", "request"]), 0, "entries with other labels")
        const [odd] = yield* sql<{ readonly n: string }>`SELECT count(*)::text AS n FROM ${sql(table)}
WHERE labels ->> 'request' NOT LIKE (labels ->> 'worker') || '-' || (labels ->> 'fiber') || '-%'
  OR budget NOT IN ('fleet', 'fleet/team') OR kind NOT IN ('record', 'commit', 'expired')`
        assert.strictEqual(Number(odd!.n), 0, "entries whose request, budget or kind is not the charge's")
        // A record retried with its key was charged once: its request is one entry.
        const [twice] = yield* sql<{ readonly n: string }>`SELECT count(*)::text AS n FROM (
  SELECT labels ->> 'request' FROM ${sql(table)} WHERE kind <> 'expired' GROUP BY 1 HAVING count(*) > 1) AS again`
        assert.strictEqual(Number(twice!.n), 0, "a request charged twice")
      }),
    120_000
  )

  it.live("a commit and a record retried after their replies were lost (CLIENT PAUSE): one row each", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const table = testTable()
        const sql = yield* testSql
        const server = yield* ownRedis()
        const client = Layer.orDie(NodeRedis.layer({ url: server.url }))
        const sink = Context.get(
          yield* Layer.build(PgLedger.layer({ table }).pipe(Layer.provide(PgLive({ maxConnections: 2 })))),
          Ledger.Sink
        )
        const store = Effect.flatMap(Layer.build(client), (redis) =>
          RedisBudget.makeStore({ prefix: "ledger:", timeout: "200 millis" }).pipe(
            Effect.provideService(Redis.Redis, Context.get(redis, Redis.Redis)),
            Effect.provideService(Ledger.Sink, sink)
          ))
        const org = yield* BudgetStoreContract.makeFromStore(store)({ name: "org" })
        const pauser = Context.get(yield* Layer.build(client), Redis.Redis)
        const pause = (millis: number) => pauser.send("CLIENT", "PAUSE", String(millis), "WRITE")
        yield* Effect.scoped(Effect.gen(function*() {
          const hold = yield* org.reserve({ tokens: 50, usd: 0.5 }, { labels: { call: "paused" } })
          yield* pause(500)
          const lost = yield* Effect.flip(hold.commit({ tokens: 25, usd: 0.25 }))
          assert.strictEqual(lost._tag, "BudgetUnavailable")
          yield* Effect.retry(hold.commit({ tokens: 25, usd: 0.25 }), { times: 20 })
        }))
        yield* pause(500)
        const lostRecord = yield* Effect.flip(org.record({ tokens: 8, usd: 0.08 }, { id: "req-9", labels: { call: "req-9" } }))
        assert.strictEqual(lostRecord._tag, "BudgetUnavailable")
        yield* Effect.retry(org.record({ tokens: 8, usd: 0.08 }, { id: "req-9", labels: { call: "req-9" } }), { times: 20 })
        yield* eventually("both entries reached the table", Effect.map(countOf(sql, table), (n) => n === 2), {
          every: "20 millis"
        })
        const snap = yield* org.snapshot
        assert.deepStrictEqual([snap.tokensUsed, usdToNanos(snap.usdUsed)], [33, 330_000_000])
        assert.deepStrictEqual(yield* sumsOf(sql, table), { entries: 2, ids: 2, tokens: 33, nanos: 330_000_000 })
        const rows = yield* sql<{ readonly kind: string; readonly labels: Ledger.Labels }>`SELECT kind, labels
FROM ${sql(table)} ORDER BY kind`
        assert.deepStrictEqual(rows.map((r) => [r.kind, r.labels]), [["commit", { call: "paused" }], ["record", {
          call: "req-9"
        }]])
        yield* eventually(
          "the outbox is empty",
          Effect.map(pauser.send<number>("XLEN", "ledger:{org}:ledger"), (n) => n === 0)
        )
      })
    ))

  it.live(
    "the memory store, 1,000 fibers interrupted at random, the sink's connection cut: the table sums to the counters, each id once",
    () =>
      capturingLogs((lines: Array<Line>) =>
        Effect.gen(function*() {
          const table = testTable()
          const sql = yield* testSql
          const proxy = yield* makeProxy
          const sink = Context.get(
            yield* Layer.build(
              PgLedger.layer({ table }).pipe(Layer.provide(PgLive({ port: proxy.port, maxConnections: 2 })))
            ),
            Ledger.Sink
          )
          const store = yield* Scope.make()
          const options: BudgetOptions = { name: "solo", tokenCap: 1_000_000_000, usdCap: 1_000 }
          const budget = yield* Budget.make(options).pipe(
            Effect.provideService(Ledger.Sink, sink),
            Scope.provide(store)
          )
          const team = yield* budget.child("team").pipe(Scope.provide(store))

          let stopping = false
          let charges = 0
          let interrupted = 0
          const fibers = yield* Effect.forkChild(Effect.forEach(
            Array.from({ length: 1_000 }, (_, fiber) => fiber),
            (fiber) =>
              Effect.gen(function*() {
                for (let request = 0; !stopping; request++) {
                  const labels = { fiber: String(fiber), request: `${fiber}-${request}` }
                  // interrupted at a random moment: in its hold, or not at all
                  const charged = yield* chargeAtRandom([budget, team], labels, 20).pipe(
                    Effect.timeoutOption(yield* Random.nextIntBetween(0, 30))
                  )
                  if (Option.isNone(charged)) interrupted++
                  charges++
                  yield* Effect.sleep(yield* Random.nextIntBetween(1, 10))
                }
              }),
            { concurrency: "unbounded", discard: true }
          ))
          yield* eventually("entries reached the table through the proxy", Effect.map(countOf(sql, table), (n) => n > 0), {
            every: "20 millis"
          })
          yield* proxy.cut
          const atCut = charges
          yield* eventually(
            "the sink refused a batch, and charges went on",
            Effect.sync(() => lines.some((line) => sinkRefused.test(line.text)) && charges >= atCut + 20_000),
            { every: "20 millis", within: "20 seconds" }
          )
          yield* proxy.restore
          const atRestore = yield* countOf(sql, table)
          yield* eventually("the sink takes entries again", Effect.map(countOf(sql, table), (n) => n > atRestore), {
            every: "50 millis",
            within: "30 seconds"
          })
          stopping = true
          yield* Fiber.join(fibers)
          yield* eventually(
            "the outbox drained",
            Effect.map(
              Metric.snapshot,
              (series) => series.some((s) => s.id === "budget_ledger_backlog" && s.type === "Gauge" && Number(s.state.value) === 0)
            ),
            { every: "20 millis", within: "30 seconds" }
          )
          const snap = yield* budget.snapshot
          // closing hands over what is left, if anything
          yield* Scope.close(store, Exit.void)

          assert.isAbove(interrupted, 0, "charges were interrupted")
          assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved], [0, 0])
          const sums = yield* sumsOf(sql, table)
          assert.deepStrictEqual(
            { tokens: sums.tokens, nanos: sums.nanos },
            { tokens: snap.tokensUsed, nanos: usdToNanos(snap.usdUsed) },
            "the ledger sums to the budget's counters"
          )
          assert.strictEqual(sums.ids, sums.entries, "no id twice")
          assert.isAbove(sums.entries, 5_000)
          assert.strictEqual(yield* mislabelled(sql, table, ["fiber", "request"]), 0, "entries with other labels")
          const [odd] = yield* sql<{ readonly n: string }>`SELECT count(*)::text AS n FROM ${sql(table)}
WHERE labels ->> 'request' NOT LIKE (labels ->> 'fiber') || '-%'
  OR budget NOT IN ('solo', 'solo/team') OR kind NOT IN ('record', 'commit')`
          assert.strictEqual(Number(odd!.n), 0, "entries whose request, budget or kind is not the charge's")
          const [twice] = yield* sql<{ readonly n: string }>`SELECT count(*)::text AS n FROM (
  SELECT labels ->> 'request' FROM ${sql(table)} GROUP BY 1 HAVING count(*) > 1) AS again`
          assert.strictEqual(Number(twice!.n), 0, "a request charged twice")
          // The outage, said as it started and as it ended; nothing else. (A
          // batch may be refused once more just after it, with a connection
          // attempt the pool made during it: a second start and end.)
          const refused = lines.filter((line) => line.level === "Warn" && sinkRefused.test(line.text)).length
          const ended = lines.filter((line) =>
            line.level === "Info" && /^Ledger sink "postgresql:\w+" takes entries again/.test(line.text)
          ).length
          assert.isAtLeast(refused, 1)
          assert.strictEqual(ended, refused, "each refusal ends")
          assert.deepStrictEqual(
            lines.filter((line) => line.level !== "Debug").length,
            refused + ended,
            lines.map((line) => `${line.level} ${line.text}`).join("\n")
          )
        })
      ),
    120_000
  )
})
