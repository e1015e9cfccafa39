/**
 * The ledger: every settled charge as one entry (its budget, tokens,
 * nano-dollars, overage, labels and time), handed to a durable sink exactly
 * once. A store with a `Ledger.Sink` in its context writes an entry in the
 * same step as each charge, into an outbox a background fiber drains to the
 * sink in batches; a sink writes idempotently by entry id, so a batch
 * written again after a failure changes nothing. See docs/ledger.md.
 *
 * @since 0.3.0
 */
import { Context, Effect, Schema } from "effect"
import { InvalidUsage, LedgerUnavailable } from "./BudgetError.ts"

export {
  /**
   * A sink that did not take a batch, or a ledger that could not be read.
   *
   * @since 0.3.0
   * @category errors
   */
  LedgerUnavailable
} from "./BudgetError.ts"

/**
 * Labels of a charge: strings by name (model, provider, user, feature,
 * request id...), carried on its hold, its events and its ledger entry.
 *
 * @since 0.3.0
 * @category models
 */
export const Labels: Schema.$Record<Schema.String, Schema.String> = Schema.Record(Schema.String, Schema.String)

/**
 * Labels of a charge.
 *
 * @since 0.3.0
 * @category models
 */
export type Labels = { readonly [name: string]: string }

/**
 * What an entry records: a `record`; a hold's `commit` (a late one
 * included); or a hold whose lease `expired` with its process (a zero
 * charge that says so: the call's usage is unknown).
 *
 * @since 0.3.0
 * @category models
 */
export const EntryKind: Schema.Literals<readonly ["record", "commit", "expired"]> = Schema.Literals([
  "record",
  "commit",
  "expired"
])

/**
 * One settled charge. `id` is stable across retries (the record's
 * idempotency key as the store scopes it, or the hold's id), so a sink
 * that keeps ids unique writes it once however often it is handed over.
 * `budget` is the path charged (its ancestors were charged the same, in
 * the same step); money is in whole nano-dollars; `at` is the store's time
 * (epoch milliseconds) and `windowEndsAt` the end of the budget's window
 * the charge fell in, if it has one.
 *
 * @since 0.3.0
 * @category models
 */
export class Entry extends Schema.Opaque<Entry>()(Schema.Struct({
  id: Schema.String,
  budget: Schema.String,
  kind: EntryKind,
  tokens: Schema.Number,
  nanos: Schema.Number,
  tokensOverage: Schema.Number,
  nanosOverage: Schema.Number,
  estimated: Schema.Boolean,
  labels: Labels,
  at: Schema.Number,
  windowEndsAt: Schema.optional(Schema.Number)
})) {}


/**
 * Where entries go. `write` must be idempotent by `Entry.id` (a batch may
 * be written again after a failure whose reply was lost) and all or
 * nothing. `batchSize` is the most entries a `write` gets; `maxBacklog` the
 * most entries an outbox keeps before the store refuses new `record`s and
 * `reserve`s with `BudgetUnavailable` (commits are always taken: their
 * usage happened).
 *
 * @since 0.3.0
 * @category services
 */
export class Sink extends Context.Service<Sink, {
  readonly name: string
  readonly write: (entries: ReadonlyArray<Entry>) => Effect.Effect<void, LedgerUnavailable>
  readonly batchSize: number
  readonly maxBacklog: number
}>()("effect-token-budget/Ledger/Sink") {}

/**
 * What the ledger says a budget spent: the sums of the entries of
 * `budget` and of the budgets below it, at or after `from` and before `to`
 * (epoch milliseconds), but those whose ids are in `excluding` (entries a
 * Redis outbox still holds, counted from there). A Redis store opened with
 * `onStateLost: "restore"` rebuilds a lost budget from it; `PgLedger.layer`
 * provides it.
 *
 * @since 0.3.0
 * @category services
 */
export class Totals extends Context.Service<Totals, {
  readonly spent: (query: {
    readonly budget: string
    readonly from: number
    readonly to: number
    readonly excluding: ReadonlyArray<string>
  }) => Effect.Effect<{ readonly tokens: number; readonly nanos: number }, LedgerUnavailable>
}>()("effect-token-budget/Ledger/Totals") {}

/**
 * How a sink is made: its batch size (default 500) and its outbox's bound
 * (default 100,000 entries).
 *
 * @since 0.3.0
 * @category models
 */
export interface SinkOptions {
  readonly batchSize?: number | undefined
  readonly maxBacklog?: number | undefined
}

const wholeAtLeastOne = (field: string, value: unknown, fallback: number): number | InvalidUsage => {
  if (value === undefined) return fallback
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 1) return value
  return new InvalidUsage({ field, value, reason: "must be a whole number, at least 1, or left out" })
}

/**
 * A sink from a `write` that keeps entry ids unique, or `InvalidUsage`
 * naming the option that is not a whole number of at least 1.
 *
 * @example
 * ```ts
 * import { Ledger } from "effect-token-budget"
 * import { Effect } from "effect"
 *
 * // entries to the log, one batch of 100 at a time (a log is not idempotent: a sketch)
 * const logSink = Ledger.makeSink(
 *   "log",
 *   (entries) => Effect.logInfo(`${entries.length} ledger entries`, entries),
 *   { batchSize: 100 }
 * )
 * ```
 *
 * @since 0.3.0
 * @category constructors
 */
export const makeSink = (
  name: string,
  write: (entries: ReadonlyArray<Entry>) => Effect.Effect<void, LedgerUnavailable>,
  options: SinkOptions = {}
): Effect.Effect<Sink["Service"], InvalidUsage> =>
  Effect.suspend(() => {
    const batchSize = wholeAtLeastOne("batchSize", options.batchSize, 500)
    if (batchSize instanceof InvalidUsage) return Effect.fail(batchSize)
    const maxBacklog = wholeAtLeastOne("maxBacklog", options.maxBacklog, 100_000)
    if (maxBacklog instanceof InvalidUsage) return Effect.fail(maxBacklog)
    return Effect.succeed(Sink.of({ name, write, batchSize, maxBacklog }))
  })
