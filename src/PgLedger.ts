/**
 * The ledger in PostgreSQL: a `Ledger.Sink` that writes entries to a table
 * of their own, and `PgLedger`, the queries over it (spend by budget path,
 * labels and time, grouped by budget, label, day or month). Runs on the
 * `SqlClient` of `effect/sql`; provide a PostgreSQL driver, such as
 * `PgClient.layer` from `@effect/sql-pg`. The table is created by a
 * migration (`effect/sql/Migrator`) when the layer is built. See
 * docs/ledger.md.
 *
 * @since 0.3.0
 */
import { Context, Effect, Layer, Schema } from "effect"
import * as Migrator from "effect/sql/Migrator"
import { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { InvalidUsage } from "./BudgetError.ts"
import * as Ledger from "./Ledger.ts"
import { usdFromNanos } from "./Usage.ts"

/**
 * Where the ledger lives and how its sink takes batches. `table` is the
 * table's name, `budget_ledger` by default, optionally with its schema
 * (`billing.budget_ledger`): lowercase letters, digits and `_`, starting
 * with a letter or `_`, at most 48 characters (63 for the schema), so the
 * names made from it (`<table>_migrations`, its indexes) fit PostgreSQL's
 * 63. `batchSize` and `maxBacklog` are the sink's (see `Ledger.SinkOptions`).
 *
 * @since 0.3.0
 * @category models
 */
export interface Options extends Ledger.SinkOptions {
  readonly table?: string | undefined
}

/**
 * How `spend` groups entries: by their budget's path, by one label's value
 * (entries without it form the group `undefined`), or by the calendar day
 * (`"2026-03-01"`) or month (`"2026-03"`) of their time, in UTC.
 *
 * @since 0.3.0
 * @category models
 */
export type GroupBy = "budget" | "day" | "month" | { readonly label: string }

/**
 * What `spend` sums. `budget` is a path (`org/tenant-a`) and includes its
 * descendants (`org/tenant-a/agent-1`), not its siblings (`org/tenant-ab`);
 * `labels` keeps entries whose labels contain all of these; `from` and `to`
 * bound their time, `from` included and `to` excluded, as epoch
 * milliseconds or a `Date`.
 *
 * @since 0.3.0
 * @category models
 */
export interface SpendQuery {
  readonly budget: string
  readonly labels?: Ledger.Labels | undefined
  readonly from?: number | Date | undefined
  readonly to?: number | Date | undefined
  readonly groupBy?: GroupBy | undefined
}

/**
 * One group's spend: its key (`undefined` without `groupBy`, or for
 * entries without the label grouped by), the tokens and nano-dollars its
 * entries charged (overage included), the same in USD, and how many
 * entries it has. Sums are exact.
 *
 * @since 0.3.0
 * @category models
 */
export interface SpendRow {
  readonly group: string | undefined
  readonly tokens: number
  readonly nanos: number
  readonly usd: number
  readonly entries: number
}

/**
 * The ledger's queries. `spend` without `groupBy` gives one row, the
 * total (zero when nothing matches); with it, a row per group, in order of
 * its key (chronological for days and months), and none when nothing
 * matches. It fails with `InvalidUsage` naming the field of a query that is
 * not usable, and with it too when a group's sum passes 2^53 - 1 tokens or
 * nano-dollars (about $9 million), the most a number holds exactly: narrow
 * the time range or group by month. `table` is the table's name, for
 * queries of your own.
 *
 * @example
 * ```ts
 * import { PgLedger } from "effect-token-budget/sql-pg"
 * import { Effect } from "effect"
 *
 * // what tenant-a spent in March 2026, per model
 * const perModel = Effect.gen(function*() {
 *   const ledger = yield* PgLedger.PgLedger
 *   const rows = yield* ledger.spend({
 *     budget: "org/tenant-a",
 *     from: Date.UTC(2026, 2, 1),
 *     to: Date.UTC(2026, 3, 1),
 *     groupBy: { label: "model" }
 *   })
 *   for (const row of rows) yield* Effect.logInfo(`${row.group ?? "(no model)"}: $${row.usd}`)
 * })
 * ```
 *
 * @since 0.3.0
 * @category services
 */
export class PgLedger extends Context.Service<PgLedger, {
  readonly table: string
  readonly spend: (query: SpendQuery) => Effect.Effect<ReadonlyArray<SpendRow>, InvalidUsage | SqlError>
}>()("effect-token-budget/PgLedger") {}

// --- the table -------------------------------------------------------------------

const identifier = /^[a-z_][a-z0-9_]*$/

interface Table {
  /** As given: `budget_ledger` or `billing.budget_ledger`. */
  readonly name: string
  /** The name without its schema, for the names of its indexes. */
  readonly base: string
}

const tableOf = (table: unknown): Table | InvalidUsage => {
  const name = table ?? "budget_ledger"
  if (typeof name === "string") {
    const parts = name.split(".")
    const base = parts[parts.length - 1] ?? ""
    const schema = parts.length === 2 ? parts[0] ?? "" : undefined
    if (
      parts.length <= 2 && identifier.test(base) && base.length <= 48 &&
      (schema === undefined || (identifier.test(schema) && schema.length <= 63))
    ) {
      return { name, base }
    }
  }
  return new InvalidUsage({
    field: "table",
    value: table,
    reason: "must be a table name of lowercase letters, digits and _ (starting with a letter or _, at most 48 " +
      "characters), optionally after a schema and a dot (billing.budget_ledger), or left out for budget_ledger"
  })
}

// The client, checked to be PostgreSQL's, without its name transforms (if
// it has any): the statements and their rows name the columns as the table
// does (`tokens_overage`, not `tokensOverage`).
const clientOf: Effect.Effect<SqlClient, InvalidUsage, SqlClient> = Effect.flatMap(SqlClient, (sql) => {
  const dialect = sql.onDialect({
    pg: () => "pg",
    sqlite: () => "sqlite",
    mysql: () => "mysql",
    mssql: () => "mssql",
    clickhouse: () => "clickhouse"
  })
  return dialect === "pg" ? Effect.succeed(sql.withoutTransforms()) : Effect.fail(
    new InvalidUsage({
      field: "SqlClient",
      value: dialect,
      reason: "must be a PostgreSQL client, such as PgClient.layer from @effect/sql-pg"
    })
  )
})

// `at` and `window_ends_at` are timestamptz: see docs/ledger.md#the-table.
const createTable = Effect.fnUntraced(function*(table: Table): Effect.fn.Return<void, SqlError, SqlClient> {
  const sql = yield* SqlClient
  yield* sql`CREATE TABLE ${sql(table.name)} (
  id text PRIMARY KEY,
  budget text NOT NULL,
  kind text NOT NULL,
  tokens bigint NOT NULL,
  nanos bigint NOT NULL,
  tokens_overage bigint NOT NULL,
  nanos_overage bigint NOT NULL,
  estimated boolean NOT NULL,
  labels jsonb NOT NULL,
  at timestamptz NOT NULL,
  window_ends_at timestamptz
)`
  // A path and its descendants are a byte-wise range: text_pattern_ops.
  yield* sql`CREATE INDEX ${sql(`${table.base}_budget_at_idx`)} ON ${sql(table.name)} (budget text_pattern_ops, at)`
  yield* sql`CREATE INDEX ${sql(`${table.base}_at_idx`)} ON ${sql(table.name)} (at)`
  // jsonb_path_ops: smaller and faster than jsonb_ops, for @> (containment) only.
  yield* sql`CREATE INDEX ${sql(`${table.base}_labels_idx`)} ON ${sql(table.name)} USING gin (labels jsonb_path_ops)`
})

const runMigrations = Migrator.make({})

/**
 * Creates the ledger's table and its indexes if they are not there yet, by
 * a migration recorded in `<table>_migrations` (effect's `Migrator`:
 * concurrent runs wait for each other, and a migration runs once). Returns
 * the migrations it ran: none when the table was already made. The layer
 * runs it when it is built; run it yourself to make the table in a
 * deployment step instead.
 *
 * @example
 * ```ts
 * import { PgLedger } from "effect-token-budget/sql-pg"
 * import { PgClient } from "@effect/sql-pg"
 * import { Effect, Redacted } from "effect"
 *
 * const migrate = PgLedger.migrate({ table: "billing.budget_ledger" }).pipe(
 *   Effect.provide(PgClient.layer({ url: Redacted.make("postgres://127.0.0.1:5432/app") }))
 * )
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const migrate: (
  options?: Pick<Options, "table">
) => Effect.Effect<
  ReadonlyArray<readonly [id: number, name: string]>,
  InvalidUsage | Migrator.MigrationError | SqlError,
  SqlClient
> = Effect.fn("PgLedger.migrate")(function*(
  options: Pick<Options, "table"> = {}
): Effect.fn.Return<
  ReadonlyArray<readonly [id: number, name: string]>,
  InvalidUsage | Migrator.MigrationError | SqlError,
  SqlClient
> {
  const table = tableOf(options.table)
  if (table instanceof InvalidUsage) return yield* table
  const sql = yield* clientOf
  return yield* runMigrations({
    loader: Migrator.fromRecord({ "1_create_ledger": createTable(table) }),
    table: `${table.name}_migrations`
  }).pipe(Effect.provideService(SqlClient, sql))
})

// --- the sink ----------------------------------------------------------------------

const iso = (millis: number): string => new Date(millis).toISOString()

// One row of the batch, as jsonb_to_recordset reads it: integers as JSON
// numbers (exact up to 2^53 - 1), times as ISO strings in UTC (exact to the
// millisecond, whatever the session's time zone).
const rowOf = (entry: Ledger.Entry) => ({
  id: entry.id,
  budget: entry.budget,
  kind: entry.kind,
  tokens: entry.tokens,
  nanos: entry.nanos,
  tokens_overage: entry.tokensOverage,
  nanos_overage: entry.nanosOverage,
  estimated: entry.estimated,
  labels: entry.labels,
  at: iso(entry.at),
  window_ends_at: entry.windowEndsAt === undefined ? null : iso(entry.windowEndsAt)
})

/**
 * The PostgreSQL `Ledger.Sink` alone, over a table `migrate` made: a batch
 * is one `INSERT ... ON CONFLICT (id) DO NOTHING` statement, so it is
 * written whole or not at all, and an entry written again (a batch retried
 * after its reply was lost, batches that overlap) is kept once. A batch
 * that does not reach the table fails with `LedgerUnavailable`, its cause
 * the `SqlError`. Fails with `InvalidUsage` naming an option that is not
 * usable.
 *
 * @example
 * ```ts
 * import { PgLedger } from "effect-token-budget/sql-pg"
 * import { Ledger } from "effect-token-budget"
 * import { Layer } from "effect"
 *
 * // the sink only: the table is made elsewhere (PgLedger.migrate, in a deployment step)
 * const SinkLive = Layer.effect(Ledger.Sink, PgLedger.makeSink({ batchSize: 1000 }))
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeSink: (
  options?: Options
) => Effect.Effect<Ledger.Sink["Service"], InvalidUsage, SqlClient> = Effect.fnUntraced(function*(
  options: Options = {}
): Effect.fn.Return<Ledger.Sink["Service"], InvalidUsage, SqlClient> {
  const table = tableOf(options.table)
  if (table instanceof InvalidUsage) return yield* table
  const sql = yield* clientOf
  const name = `postgresql:${table.name}`
  const unavailable = (cause: unknown) => new Ledger.LedgerUnavailable({ sink: name, cause })
  const insert = (rows: string) =>
    sql`INSERT INTO ${sql(table.name)}
  (id, budget, kind, tokens, nanos, tokens_overage, nanos_overage, estimated, labels, at, window_ends_at)
SELECT id, budget, kind, tokens, nanos, tokens_overage, nanos_overage, estimated, labels, at, window_ends_at
FROM jsonb_to_recordset(${rows}::jsonb) AS entry(
  id text, budget text, kind text, tokens bigint, nanos bigint, tokens_overage bigint, nanos_overage bigint,
  estimated boolean, labels jsonb, at timestamptz, window_ends_at timestamptz
)
ON CONFLICT (id) DO NOTHING`
  const write = Effect.fn("PgLedger.write")(function*(entries: ReadonlyArray<Ledger.Entry>) {
    if (entries.length === 0) return
    // A time outside Date's range cannot be written: it fails like the table would.
    const rows = yield* Effect.try({ try: () => JSON.stringify(entries.map(rowOf)), catch: unavailable })
    yield* Effect.mapError(insert(rows), unavailable)
  })
  return yield* Ledger.makeSink(name, write, options)
})

// --- the queries -------------------------------------------------------------------

const queryError = (field: string, value: unknown, reason: string) =>
  new InvalidUsage({ field: `query.${field}`, value, reason })

const pathError = (budget: unknown): InvalidUsage | undefined =>
  typeof budget === "string" && budget.length > 0 && budget.split("/").every((name) => name.length > 0)
    ? undefined
    : queryError("budget", budget, "must be a budget's path: names joined by \"/\", none of them empty (org/tenant-a)")

const isLabels = Schema.is(Ledger.Labels)

// Epoch milliseconds a Date can hold, or undefined for a value that is not a time.
const millisOf = (value: number | Date): number | undefined => {
  const millis = value instanceof Date ? value.getTime() : value
  return typeof millis === "number" && Number.isInteger(millis) && Math.abs(millis) <= 8.64e15 ? millis : undefined
}

const timeOf = (field: "from" | "to", value: unknown): Date | undefined | InvalidUsage => {
  if (value === undefined) return undefined
  const millis = typeof value === "number" || value instanceof Date ? millisOf(value) : undefined
  return millis === undefined
    ? queryError(field, value, "must be a time: whole epoch milliseconds or a valid Date, or left out")
    : new Date(millis)
}

const groupByError = (groupBy: unknown): InvalidUsage | undefined => {
  if (groupBy === undefined || groupBy === "budget" || groupBy === "day" || groupBy === "month") return undefined
  if (typeof groupBy === "object" && groupBy !== null && "label" in groupBy) {
    const label = groupBy.label
    if (typeof label === "string" && label.length > 0) return undefined
    return queryError("groupBy.label", label, "must be a label's name, a non-empty string")
  }
  return queryError("groupBy", groupBy, "must be \"budget\", \"day\", \"month\", { label: name }, or left out")
}

// A sum read as text and parsed exactly, or undefined past 2^53 - 1.
const exact = (text: string): number | undefined => {
  const value = BigInt(text)
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : undefined
}

interface SumRow {
  readonly group: string | null
  readonly tokens: string
  readonly nanos: string
  readonly entries: string
}

/**
 * Entries of the budget at `path` or one below it: a byte-wise range ("/"
 * is 0x2F, "0" the byte after it), so no character of a name (% and _
 * included) is a pattern, and the text_pattern_ops index serves it.
 */
const withinPath = (sql: SqlClient, path: string) =>
  sql`(budget = ${path} OR (budget ~>=~ ${`${path}/`} AND budget ~<~ ${`${path}0`}))`

/** `Ledger.Totals` over the table: what a Redis store rebuilds a lost budget from. */
const makeTotals = (sql: SqlClient, table: Table): Ledger.Totals["Service"] => {
  const unavailable = (cause: unknown) => new Ledger.LedgerUnavailable({ sink: `postgresql:${table.name}`, cause })
  return Ledger.Totals.of({
    spent: ({ budget, excluding, from, to }) =>
      sql<Pick<SumRow, "tokens" | "nanos">>`SELECT coalesce(sum(tokens), 0)::text AS tokens,
  coalesce(sum(nanos), 0)::text AS nanos
FROM ${sql(table.name)}
WHERE ${withinPath(sql, budget)} AND at >= ${new Date(from)} AND at < ${new Date(to)}
  AND id NOT IN (SELECT jsonb_array_elements_text(${JSON.stringify(excluding)}::jsonb))`.pipe(
        Effect.mapError(unavailable),
        Effect.flatMap(([row]) => {
          const tokens = exact(row!.tokens)
          const nanos = exact(row!.nanos)
          return tokens === undefined || nanos === undefined
            ? Effect.fail(unavailable(new Error(`the entries of "${budget}" sum past ${Number.MAX_SAFE_INTEGER}`)))
            : Effect.succeed({ tokens, nanos })
        })
      )
  })
}

const makeSpend = (sql: SqlClient, table: Table) =>
  Effect.fn("PgLedger.spend")(function*(query: SpendQuery) {
    if (typeof query !== "object" || query === null) {
      return yield* new InvalidUsage({ field: "query", value: query, reason: "must be an object with a budget" })
    }
    const invalidPath = pathError(query.budget)
    if (invalidPath !== undefined) return yield* invalidPath
    if (query.labels !== undefined && !isLabels(query.labels)) {
      return yield* queryError("labels", query.labels, "must be an object of strings by name, or left out")
    }
    const from = timeOf("from", query.from)
    if (from instanceof InvalidUsage) return yield* from
    const to = timeOf("to", query.to)
    if (to instanceof InvalidUsage) return yield* to
    if (from !== undefined && to !== undefined && to < from) {
      return yield* queryError("to", query.to, `must not be before query.from (${from.toISOString()})`)
    }
    const invalidGroupBy = groupByError(query.groupBy)
    if (invalidGroupBy !== undefined) return yield* invalidGroupBy

    const conditions = [
      withinPath(sql, query.budget),
      ...(query.labels === undefined ? [] : [sql`labels @> ${JSON.stringify(query.labels)}::jsonb`]),
      ...(from === undefined ? [] : [sql`at >= ${from}`]),
      ...(to === undefined ? [] : [sql`at < ${to}`])
    ]
    const groupBy = query.groupBy
    const group = groupBy === undefined
      ? sql`NULL::text`
      : groupBy === "budget"
      ? sql`budget`
      : groupBy === "day"
      ? sql`to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD')`
      : groupBy === "month"
      ? sql`to_char(at AT TIME ZONE 'UTC', 'YYYY-MM')`
      : sql`labels ->> ${groupBy.label}`
    const grouping = groupBy === undefined ? sql`` : sql`GROUP BY 1 ORDER BY 1 NULLS LAST`
    // Keys in byte order, whatever the database's collation.
    const rows = yield* sql<SumRow>`SELECT (${group}) COLLATE "C" AS "group",
  coalesce(sum(tokens), 0)::text AS tokens, coalesce(sum(nanos), 0)::text AS nanos, count(*)::text AS entries
FROM ${sql(table.name)}
WHERE ${sql.and(conditions)}
${grouping}`

    const result: Array<SpendRow> = []
    for (const row of rows) {
      const tokens = exact(row.tokens)
      const nanos = exact(row.nanos)
      if (tokens === undefined || nanos === undefined) {
        const which = tokens === undefined ? `${row.tokens} tokens` : `${row.nanos} nano-dollars`
        return yield* new InvalidUsage({
          field: "query",
          value: query,
          reason: `sums to ${which}${row.group === null ? "" : ` in group ${JSON.stringify(row.group)}`}, past ` +
            `${Number.MAX_SAFE_INTEGER}, the most a number counts exactly: narrow from and to, or group by month`
        })
      }
      result.push({
        group: row.group ?? undefined,
        tokens,
        nanos,
        usd: usdFromNanos(nanos),
        entries: Number(row.entries)
      })
    }
    return result
  })

/**
 * The ledger's queries alone, over a table `migrate` made. Fails with
 * `InvalidUsage` when `table` is not a usable name.
 *
 * @example
 * ```ts
 * import { PgLedger } from "effect-token-budget/sql-pg"
 * import { Layer } from "effect"
 *
 * // queries only, in a reporting service that writes no entries
 * const Reports = Layer.effect(PgLedger.PgLedger, PgLedger.make({ table: "budget_ledger" }))
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const make: (
  options?: Pick<Options, "table">
) => Effect.Effect<PgLedger["Service"], InvalidUsage, SqlClient> = Effect.fnUntraced(function*(
  options: Pick<Options, "table"> = {}
): Effect.fn.Return<PgLedger["Service"], InvalidUsage, SqlClient> {
  const table = tableOf(options.table)
  if (table instanceof InvalidUsage) return yield* table
  const sql = yield* clientOf
  return PgLedger.of({ table: table.name, spend: makeSpend(sql, table) })
})

/**
 * The ledger in PostgreSQL: the `Ledger.Sink` a budget's store writes its
 * entries to, `PgLedger`, their queries, and the `Ledger.Totals` a Redis
 * store opened with `onStateLost: "restore"` rebuilds a lost budget from.
 * Building it runs `migrate`
 * (the table is made once). Needs a PostgreSQL `SqlClient`, such as
 * `PgClient.layer` from `@effect/sql-pg`; fails with `InvalidUsage` naming
 * an option that is not usable.
 *
 * @example
 * ```ts
 * import { Budget } from "effect-token-budget"
 * import { PgLedger } from "effect-token-budget/sql-pg"
 * import { PgClient } from "@effect/sql-pg"
 * import { Layer, Redacted } from "effect"
 *
 * const LedgerLive = PgLedger.layer({ table: "budget_ledger" }).pipe(
 *   Layer.provide(PgClient.layer({ url: Redacted.make("postgres://127.0.0.1:5432/app") }))
 * )
 * // the budget writes every charge to the ledger; PgLedger answers queries
 * const Live = Budget.layer({ name: "org", usdCap: 1000 }).pipe(Layer.provideMerge(LedgerLive))
 * ```
 *
 * @since 0.3.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<Ledger.Sink | Ledger.Totals | PgLedger, InvalidUsage | Migrator.MigrationError | SqlError, SqlClient> =>
  Layer.effectContext(Effect.gen(function*() {
    const table = tableOf(options.table)
    if (table instanceof InvalidUsage) return yield* table
    yield* migrate(options)
    const sink = yield* makeSink(options)
    const ledger = yield* make(options)
    const totals = makeTotals(yield* clientOf, table)
    return Context.make(Ledger.Sink, sink).pipe(Context.add(PgLedger, ledger), Context.add(Ledger.Totals, totals))
  }))
