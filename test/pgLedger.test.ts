/**
 * The ledger in PostgreSQL (effect-token-budget/sql-pg), against the shared
 * server at 127.0.0.1:5432 (support/postgres.ts): the migration, the sink
 * (idempotent by id, all or nothing, exact bigints, through a connection
 * cut by a proxy of the test's own), the queries against sums computed
 * here over random entries, and bad input.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Schedule } from "effect"
import type { Scope } from "effect"
import { SqlClient } from "effect/sql/SqlClient"
import * as fc from "fast-check"
import { InvalidUsage, Ledger } from "../src/index.ts"
import { PgLedger } from "../src/sql-pg.ts"
import { eventually } from "./support/poll.ts"
import { available, makeProxy, PgLive, testTable } from "./support/postgres.ts"

const entry = (fields: Partial<Ledger.Entry> & Pick<Ledger.Entry, "id">): Ledger.Entry =>
  Ledger.Entry.make({
    budget: "org",
    kind: "record",
    tokens: 0,
    nanos: 0,
    tokensOverage: 0,
    nanosOverage: 0,
    estimated: false,
    labels: {},
    at: Date.UTC(2026, 0, 1),
    ...fields
  })

/** The ledger's services over a table of the test's own, on a client of their own. */
const ledgerOn = (
  table: string,
  client: Layer.Layer<SqlClient, unknown> = PgLive(),
  options: Omit<PgLedger.Options, "table"> = {}
): Effect.Effect<{ readonly sink: Ledger.Sink["Service"]; readonly ledger: PgLedger.PgLedger["Service"]; readonly sql: SqlClient }, unknown, Scope.Scope> =>
  Effect.gen(function*() {
    const context = yield* Layer.build(PgLedger.layer({ table, ...options }).pipe(Layer.provideMerge(client)))
    return yield* Effect.gen(function*() {
      return { sink: yield* Ledger.Sink, ledger: yield* PgLedger.PgLedger, sql: yield* SqlClient }
    }).pipe(Effect.provide(context))
  })

/** The rows of `table`, every number as text (read exactly), times as epoch milliseconds. */
const rowsOf = (sql: SqlClient, table: string) =>
  sql<{
    readonly id: string
    readonly budget: string
    readonly kind: string
    readonly tokens: string
    readonly nanos: string
    readonly tokens_overage: string
    readonly nanos_overage: string
    readonly estimated: boolean
    readonly labels: Ledger.Labels
    readonly at: string
    readonly window_ends_at: string | null
  }>`SELECT id, budget, kind, tokens::text, nanos::text, tokens_overage::text, nanos_overage::text, estimated, labels,
  (extract(epoch FROM at) * 1000)::bigint::text AS at, (extract(epoch FROM window_ends_at) * 1000)::bigint::text AS window_ends_at
FROM ${sql(table)} ORDER BY id`

/** An entry as `rowsOf` reads it back. */
const asRow = (e: Ledger.Entry) => ({
  id: e.id,
  budget: e.budget,
  kind: e.kind,
  tokens: String(e.tokens),
  nanos: String(e.nanos),
  tokens_overage: String(e.tokensOverage),
  nanos_overage: String(e.nanosOverage),
  estimated: e.estimated,
  labels: e.labels,
  at: String(e.at),
  window_ends_at: e.windowEndsAt === undefined ? null : String(e.windowEndsAt)
})

const byId = (a: { readonly id: string }, b: { readonly id: string }) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)

describe.runIf(available)("the PostgreSQL ledger", () => {
  describe("the migration", () => {
    it.live("creates the table, its columns and its indexes; run again, it does nothing", () =>
      Effect.gen(function*() {
        const table = testTable()
        const sql = yield* Effect.provide(SqlClient, yield* Layer.build(PgLive()))
        const migrate = PgLedger.migrate({ table }).pipe(Effect.provideService(SqlClient, sql))
        assert.deepStrictEqual(yield* migrate, [[1, "create_ledger"]])
        assert.deepStrictEqual(yield* migrate, [])

        const columns = yield* sql<{ readonly column_name: string; readonly data_type: string; readonly is_nullable: string }>`
SELECT column_name, data_type, is_nullable FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = ${table} ORDER BY ordinal_position`
        assert.deepStrictEqual(columns.map((c) => `${c.column_name} ${c.data_type}${c.is_nullable === "YES" ? " null" : ""}`), [
          "id text",
          "budget text",
          "kind text",
          "tokens bigint",
          "nanos bigint",
          "tokens_overage bigint",
          "nanos_overage bigint",
          "estimated boolean",
          "labels jsonb",
          "at timestamp with time zone",
          "window_ends_at timestamp with time zone null"
        ])
        const indexes = yield* sql<{ readonly indexdef: string }>`
SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = ${table} ORDER BY indexname`
        const definitions = indexes.map((i) => i.indexdef.replace(/^.* USING /, ""))
        assert.deepStrictEqual(definitions, [
          "btree (at)",
          "btree (budget text_pattern_ops, at)",
          "gin (labels jsonb_path_ops)",
          "btree (id)"
        ])
        const migrations = yield* sql<{ readonly migration_id: number; readonly name: string }>`
SELECT migration_id, name FROM ${sql(`${table}_migrations`)}`
        assert.deepStrictEqual(migrations.map((m) => [m.migration_id, m.name]), [[1, "create_ledger"]])
      }))

    it.live("processes that start together make the table once; the layer migrates when built", () =>
      Effect.gen(function*() {
        const table = `public.${testTable()}`
        const runs = yield* Effect.all(
          Array.from({ length: 3 }, () => PgLedger.migrate({ table }).pipe(Effect.provide(PgLive()))),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(runs.flat(), [[1, "create_ledger"]])
        // and the layer, built on the same table, finds it made
        const { ledger } = yield* ledgerOn(table)
        assert.strictEqual(ledger.table, table)
        assert.deepStrictEqual(yield* ledger.spend({ budget: "org" }), [
          { group: undefined, tokens: 0, nanos: 0, usd: 0, entries: 0 }
        ])
      }))
  })

  describe("the sink", () => {
    it.live("keeps each entry once, however often and in whatever batches it is written; reads back exact", () =>
      Effect.gen(function*() {
        const table = testTable()
        const { sink, ledger, sql } = yield* ledgerOn(table, PgLive(), { batchSize: 50, maxBacklog: 1000 })
        assert.strictEqual(sink.name, `postgresql:${table}`)
        assert.deepStrictEqual([sink.batchSize, sink.maxBacklog], [50, 1000])

        const big = [2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1, 2 ** 32 + 7, 2 ** 40, 2 ** 50 + 3, 2 ** 52 - 1]
        const entries = big.map((n, i) =>
          entry({
            id: `e${i}`,
            budget: i % 2 === 0 ? "org/a" : "org/b",
            kind: (["record", "commit", "expired"] as const)[i % 3]!,
            tokens: n,
            nanos: n + i,
            tokensOverage: i,
            nanosOverage: n - 1,
            estimated: i % 2 === 1,
            labels: { model: `m${i % 2}`, "request id": `r-${i}` },
            at: Date.UTC(2026, 0, 1, 0, 0, 0, i),
            ...(i % 2 === 0 ? { windowEndsAt: Date.UTC(2026, 0, 2) } : {})
          })
        )
        yield* sink.write(entries.slice(0, 4))
        yield* sink.write(entries.slice(0, 4))
        // overlapping, and with an id twice in one batch
        yield* sink.write([...entries.slice(2), entries[6]!])
        yield* sink.write([])
        assert.deepStrictEqual(yield* rowsOf(sql, table), entries.map(asRow).sort(byId))

        const [total] = yield* ledger.spend({ budget: "org" })
        const sum = big.reduce((a, b) => a + b, 0)
        assert.isTrue(sum > 2 ** 52 && Number.isSafeInteger(sum + 21))
        assert.deepStrictEqual(total, {
          group: undefined,
          tokens: sum,
          nanos: sum + 21,
          usd: (sum + 21) / 1e9,
          entries: big.length
        })
      }))

    it.live("sums up to 2^53 - 1 exactly, and fails with InvalidUsage past it rather than round", () =>
      Effect.gen(function*() {
        const table = testTable()
        const { sink, ledger } = yield* ledgerOn(table)
        const max = Number.MAX_SAFE_INTEGER
        yield* sink.write([
          entry({ id: "a", budget: "org/a", tokens: max - 10, nanos: max - 1, at: Date.UTC(2026, 0, 1) }),
          entry({ id: "b", budget: "org/a", tokens: 10, nanos: 0, at: Date.UTC(2026, 0, 2) }),
          entry({ id: "c", budget: "org/b", tokens: 1, nanos: 2, at: Date.UTC(2026, 1, 1) })
        ])
        assert.deepStrictEqual(yield* ledger.spend({ budget: "org/a" }), [
          { group: undefined, tokens: max, nanos: max - 1, usd: (max - 1) / 1e9, entries: 2 }
        ])
        const past = yield* Effect.flip(ledger.spend({ budget: "org" }))
        assert.strictEqual(past._tag === "InvalidUsage" && past.field, "query")
        assert.include(past.message, "9007199254740992 tokens")
        assert.include(past.message, "group by month")
        // grouped so that no group passes it, the same entries sum exactly
        assert.deepStrictEqual(
          (yield* ledger.spend({ budget: "org", groupBy: "month" })).map((r) => [r.group, r.tokens, r.nanos]),
          [["2026-01", max, max - 1], ["2026-02", 1, 2]]
        )
      }))

    it.live("writes a batch whole or not at all", () =>
      Effect.gen(function*() {
        const table = testTable()
        const { sink, sql } = yield* ledgerOn(table)
        // 1e20 tokens is past a bigint: the statement fails, and so does every entry of its batch
        const failed = yield* Effect.flip(sink.write([entry({ id: "ok", tokens: 5 }), entry({ id: "bad", tokens: 1e20 })]))
        assert.strictEqual(failed._tag, "LedgerUnavailable")
        assert.strictEqual(failed.sink, `postgresql:${table}`)
        assert.include(failed.message, `Ledger sink "postgresql:${table}" did not take a batch`)
        assert.deepStrictEqual(yield* rowsOf(sql, table), [])
        // a time a Date cannot hold fails the same way, before the statement
        const outOfRange = yield* Effect.flip(sink.write([entry({ id: "late", at: 9e15 })]))
        assert.strictEqual(outOfRange._tag, "LedgerUnavailable")
        yield* sink.write([entry({ id: "ok", tokens: 5 })])
        assert.deepStrictEqual((yield* rowsOf(sql, table)).map((r) => [r.id, r.tokens]), [["ok", "5"]])
      }))

    it.live("fails with LedgerUnavailable while its connection is cut, and writes each entry once after", () =>
      Effect.gen(function*() {
        const table = testTable()
        const proxy = yield* makeProxy
        // a client through the proxy; the test reads the table on a client of its own
        const { sink } = yield* ledgerOn(table, PgLive({ port: proxy.port, maxConnections: 2 }))
        const { sql } = yield* ledgerOn(table)
        // The client's pool may keep a connection attempt that failed during
        // the outage and hand it to the next statement: the first write after
        // may fail with it, and is taken when retried, as the outbox retries.
        let retried = 0
        const afterOutage = (write: Effect.Effect<void, Ledger.LedgerUnavailable>) =>
          write.pipe(
            Effect.tapError(() => Effect.sync(() => retried++)),
            Effect.retry({ times: 3, schedule: Schedule.spaced("50 millis") })
          )
        const batch = (from: number, to: number) =>
          Array.from({ length: to - from }, (_, i) => entry({ id: `e${from + i}`, tokens: 1, nanos: 2 ** 33 }))
        yield* sink.write(batch(0, 10))

        // the connection is cut and new ones are refused: the write fails, promptly
        yield* proxy.cut
        const down = yield* Effect.flip(sink.write(batch(5, 15))).pipe(Effect.timeout("15 seconds"))
        assert.strictEqual(down._tag, "LedgerUnavailable")
        assert.include(down.message, "did not take a batch")
        yield* proxy.restore
        yield* afterOutage(sink.write(batch(5, 15)))

        // the reply is lost: the statement ran, the write failed; written again, it changes nothing
        yield* proxy.swallowReplies
        const lost = yield* Effect.forkChild(Effect.flip(sink.write(batch(15, 20))))
        yield* eventually(
          "the batch whose reply is lost reached the table",
          Effect.map(sql`SELECT 1 FROM ${sql(table)} WHERE id = 'e19'`, (rows) => rows.length === 1),
          { every: "20 millis" }
        )
        yield* proxy.cut
        assert.strictEqual((yield* Fiber.join(lost))._tag, "LedgerUnavailable")
        yield* proxy.restore
        yield* afterOutage(sink.write(batch(15, 20)))
        yield* sink.write(batch(0, 20))

        assert.isAtMost(retried, 2, "at most one failure kept from each outage")
        const rows = yield* rowsOf(sql, table)
        assert.deepStrictEqual(rows.map((r) => r.id), batch(0, 20).map((e) => e.id).sort())
        assert.isTrue(rows.every((r) => r.nanos === String(2 ** 33)))
      }), 60_000)
  })

  describe("spend", () => {
    // Budgets that share a prefix, and names with LIKE's % and _ in them.
    const paths = ["org", "org/a", "org/ab", "org/ab/z", "org/a/x", "org/a/x/deep", "org/a-b", "org/b", "org/a%", "org/a_", "org/a_/y", "org/%", "org/%/q", "other"]
    const models = ["m1", "m2", "m%"]
    const features = ["search", "chat"]
    // midnights (UTC) of a month's turn, a year's turn, and a leap day, and the milliseconds around them
    const instants = [Date.UTC(2025, 11, 31), Date.UTC(2026, 0, 1), Date.UTC(2026, 1, 1), Date.UTC(2026, 1, 28), Date.UTC(2026, 2, 1)]
      .flatMap((t) => [t - 1, t, t + 1])
    const time = fc.oneof(fc.constantFrom(...instants), fc.integer({ min: Date.UTC(2025, 11, 28), max: Date.UTC(2026, 2, 3) }))
    const amount = fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 2 ** 31 - 2, max: 2 ** 42 }))
    const entries = fc.array(
      fc.record({
        budget: fc.constantFrom(...paths),
        tokens: amount,
        nanos: amount,
        model: fc.option(fc.constantFrom(...models), { nil: undefined }),
        feature: fc.option(fc.constantFrom(...features), { nil: undefined }),
        at: time
      }),
      { maxLength: 150 }
    ).map((drawn) =>
      drawn.map((d, i) =>
        entry({
          id: `e${i}`,
          budget: d.budget,
          tokens: d.tokens,
          nanos: d.nanos,
          at: d.at,
          labels: {
            ...(d.model === undefined ? {} : { model: d.model }),
            ...(d.feature === undefined ? {} : { feature: d.feature })
          }
        })
      )
    )
    const query: fc.Arbitrary<PgLedger.SpendQuery> = fc.record({
      budget: fc.constantFrom(...paths, "org/a/x/deep/none", "nobody"),
      labels: fc.option(
        fc.oneof(
          fc.record({ model: fc.constantFrom(...models) }),
          fc.record({ feature: fc.constantFrom(...features) }),
          fc.record({ model: fc.constantFrom(...models), feature: fc.constantFrom(...features) }),
          fc.constant({})
        ),
        { nil: undefined }
      ),
      range: fc.option(fc.tuple(time, time).map(([a, b]) => (a <= b ? [a, b] : [b, a])), { nil: undefined }),
      open: fc.constantFrom("both", "from", "to"),
      groupBy: fc.option(
        fc.constantFrom<PgLedger.GroupBy>("budget", "day", "month", { label: "model" }, { label: "feature" }, { label: "none" }),
        { nil: undefined }
      ),
      asDate: fc.boolean()
    }).map(({ asDate, budget, groupBy, labels, open, range }) => {
      const t = (millis: number) => (asDate ? new Date(millis) : millis)
      return {
        budget,
        ...(labels === undefined ? {} : { labels }),
        ...(range === undefined || open === "to" ? {} : { from: t(range[0]) }),
        ...(range === undefined || open === "from" ? {} : { to: t(range[1]) }),
        ...(groupBy === undefined ? {} : { groupBy })
      }
    })

    // The same sums, computed here: what spend must answer.
    const expected = (all: ReadonlyArray<Ledger.Entry>, q: PgLedger.SpendQuery): ReadonlyArray<PgLedger.SpendRow> => {
      const millis = (t: number | Date | undefined) => (t instanceof Date ? t.getTime() : t)
      const from = millis(q.from)
      const to = millis(q.to)
      const matching = all.filter((e) =>
        (e.budget === q.budget || e.budget.startsWith(`${q.budget}/`)) &&
        Object.entries(q.labels ?? {}).every(([k, v]) => e.labels[k] === v) &&
        (from === undefined || e.at >= from) &&
        (to === undefined || e.at < to)
      )
      const keyOf = (e: Ledger.Entry): string | undefined => {
        const g = q.groupBy
        if (g === undefined) return undefined
        if (g === "budget") return e.budget
        if (g === "day") return new Date(e.at).toISOString().slice(0, 10)
        if (g === "month") return new Date(e.at).toISOString().slice(0, 7)
        return e.labels[g.label]
      }
      const groups = new Map<string | undefined, { tokens: bigint; nanos: bigint; entries: number }>()
      if (q.groupBy === undefined) groups.set(undefined, { tokens: 0n, nanos: 0n, entries: 0 })
      for (const e of matching) {
        const key = keyOf(e)
        const group = groups.get(key) ?? { tokens: 0n, nanos: 0n, entries: 0 }
        group.tokens += BigInt(e.tokens)
        group.nanos += BigInt(e.nanos)
        group.entries++
        groups.set(key, group)
      }
      return [...groups.entries()]
        .sort(([a], [b]) => (a === b ? 0 : a === undefined ? 1 : b === undefined ? -1 : a < b ? -1 : 1))
        .map(([group, sums]) => ({
          group,
          tokens: Number(sums.tokens),
          nanos: Number(sums.nanos),
          usd: Number(sums.nanos) / 1e9,
          entries: sums.entries
        }))
    }

    it.live("answers what the entries sum to, by path with descendants, labels, time range and group", () =>
      Effect.gen(function*() {
        const table = testTable()
        // a session in UTC+14: days and months are still UTC's
        const { ledger, sink, sql } = yield* ledgerOn(table, PgLive({ startupParameters: { TimeZone: "Pacific/Kiritimati" } }))
        let queries = 0
        yield* Effect.promise(() =>
          fc.assert(
            fc.asyncProperty(entries, fc.array(query, { minLength: 1, maxLength: 25 }), (all, qs) =>
              Effect.runPromise(Effect.gen(function*() {
                yield* sql`TRUNCATE ${sql(table)}`
                for (let i = 0; i < all.length; i += 40) yield* sink.write(all.slice(i, i + 40))
                for (const q of qs) {
                  queries++
                  assert.deepStrictEqual(yield* ledger.spend(q), expected(all, q), JSON.stringify(q))
                }
              }))
            ),
            { numRuns: 12 }
          )
        )
        assert.isTrue(queries > 12)
      }), 60_000)

    it.live("a path is itself and what is below it: not its siblings, and % and _ match only themselves", () =>
      Effect.gen(function*() {
        const table = testTable()
        const { ledger, sink } = yield* ledgerOn(table)
        const names = ["org/a", "org/a/x", "org/ab", "org/a-b", "org/a%", "org/a%/y", "org/a_", "org/ax", "org/%", "org"]
        yield* sink.write(names.map((budget, i) => entry({ id: `e${i}`, budget, tokens: 2 ** i })))
        const spent = (budget: string) =>
          Effect.map(ledger.spend({ budget, groupBy: "budget" }), (rows) => rows.map((r) => r.group))
        assert.deepStrictEqual(yield* spent("org/a"), ["org/a", "org/a/x"])
        assert.deepStrictEqual(yield* spent("org/a%"), ["org/a%", "org/a%/y"])
        assert.deepStrictEqual(yield* spent("org/a_"), ["org/a_"])
        assert.deepStrictEqual(yield* spent("org/%"), ["org/%"])
        assert.deepStrictEqual(yield* spent("or"), [])
        assert.strictEqual((yield* spent("org")).length, names.length)
      }))

    it.live("groups by a label, by UTC day and by UTC month, in order, with entries lacking the label last", () =>
      Effect.gen(function*() {
        const table = testTable()
        const { ledger, sink } = yield* ledgerOn(table)
        yield* sink.write([
          entry({ id: "1", tokens: 1, nanos: 10, labels: { model: "b" }, at: Date.UTC(2026, 0, 31, 23, 59, 59, 999) }),
          entry({ id: "2", tokens: 2, nanos: 20, labels: { model: "a" }, at: Date.UTC(2026, 1, 1) }),
          entry({ id: "3", tokens: 4, nanos: 40, labels: {}, at: Date.UTC(2026, 1, 1, 12) }),
          entry({ id: "4", tokens: 8, nanos: 80, labels: { model: "a", feature: "chat" }, at: Date.UTC(2026, 2, 1) })
        ])
        const groups = (groupBy: PgLedger.GroupBy) =>
          Effect.map(ledger.spend({ budget: "org", groupBy }), (rows) => rows.map((r) => [r.group, r.tokens, r.entries]))
        assert.deepStrictEqual(yield* groups({ label: "model" }), [["a", 10, 2], ["b", 1, 1], [undefined, 4, 1]])
        assert.deepStrictEqual(yield* groups("day"), [["2026-01-31", 1, 1], ["2026-02-01", 6, 2], ["2026-03-01", 8, 1]])
        assert.deepStrictEqual(yield* groups("month"), [["2026-01", 1, 1], ["2026-02", 6, 2], ["2026-03", 8, 1]])
        // [from, to): February's first millisecond in, March's first out
        const february = yield* ledger.spend({
          budget: "org",
          from: new Date(Date.UTC(2026, 1, 1)),
          to: Date.UTC(2026, 2, 1),
          labels: { model: "a" }
        })
        assert.deepStrictEqual(february, [{ group: undefined, tokens: 2, nanos: 20, usd: 2e-8, entries: 1 }])
        assert.deepStrictEqual(yield* ledger.spend({ budget: "org", groupBy: "month", from: Date.UTC(2027, 0, 1) }), [])
      }))
  })

  describe("bad input", () => {
    it.live("a table name that is not a plain identifier fails with InvalidUsage naming table and the value", () =>
      Effect.gen(function*() {
        const bad: ReadonlyArray<unknown> = [
          "",
          "Ledger",
          "1ledger",
          "ledger; DROP TABLE users",
          "led\"ger",
          "a.b.c",
          ".ledger",
          "x".repeat(49),
          42
        ]
        for (const table of bad) {
          const error = yield* Effect.flip(Layer.build(PgLedger.layer({ table: table as string }).pipe(Layer.provide(PgLive()))))
          assert.instanceOf(error, InvalidUsage)
          assert.strictEqual(error instanceof InvalidUsage && error.field, "table")
          assert.strictEqual(error instanceof InvalidUsage && error.value, table)
          assert.include(error.message, "Invalid table:")
        }
        const batch = yield* Effect.flip(Layer.build(PgLedger.layer({ table: testTable(), batchSize: 0 }).pipe(Layer.provide(PgLive()))))
        assert.strictEqual(batch instanceof InvalidUsage && batch.field, "batchSize")
      }))

    it.live("a query field that is not usable fails with InvalidUsage naming the field and the value", () =>
      Effect.gen(function*() {
        const { ledger } = yield* ledgerOn(testTable())
        const cases: ReadonlyArray<readonly [unknown, string, unknown]> = [
          [{ budget: "" }, "query.budget", ""],
          [{ budget: "org//a" }, "query.budget", "org//a"],
          [{ budget: "/org" }, "query.budget", "/org"],
          [{ budget: "org/" }, "query.budget", "org/"],
          [{ budget: 7 }, "query.budget", 7],
          [{ budget: "org", labels: { model: 1 } }, "query.labels", { model: 1 }],
          [{ budget: "org", labels: "model" }, "query.labels", "model"],
          [{ budget: "org", from: Number.NaN }, "query.from", Number.NaN],
          [{ budget: "org", from: 1.5 }, "query.from", 1.5],
          [{ budget: "org", from: "2026-01-01" }, "query.from", "2026-01-01"],
          [{ budget: "org", to: 1e16 }, "query.to", 1e16],
          [{ budget: "org", from: 10, to: 5 }, "query.to", 5],
          [{ budget: "org", groupBy: "week" }, "query.groupBy", "week"],
          [{ budget: "org", groupBy: { label: "" } }, "query.groupBy.label", ""],
          [{ budget: "org", groupBy: { name: "model" } }, "query.groupBy", { name: "model" }],
          [undefined, "query", undefined]
        ]
        for (const [q, field, value] of cases) {
          const error = yield* Effect.flip(ledger.spend(q as PgLedger.SpendQuery))
          assert.strictEqual(error._tag, "InvalidUsage", JSON.stringify(q))
          assert.strictEqual(error._tag === "InvalidUsage" && error.field, field, JSON.stringify(q))
          assert.deepStrictEqual(error._tag === "InvalidUsage" && error.value, value, JSON.stringify(q))
          assert.include(error.message, `Invalid ${field}:`)
        }
        const invalidDate = yield* Effect.flip(ledger.spend({ budget: "org", from: new Date(Number.NaN) }))
        assert.strictEqual(invalidDate._tag === "InvalidUsage" && invalidDate.field, "query.from")
        assert.isTrue(Exit.isSuccess(yield* Effect.exit(ledger.spend({ budget: "org", from: 5, to: 5 }))))
      }))
  })
})
