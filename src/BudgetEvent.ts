/**
 * What happens to a budget, as a stream of events: every charge, hold,
 * refusal, threshold and reset, each naming the budget's path. Each event is
 * a Schema, so events can be validated, encoded (to log or forward them) and
 * decoded (when they come from elsewhere).
 *
 * @since 0.1.0
 */
import { Schema } from "effect"
import { Axis, Limit, LimitAxis } from "./BudgetError.ts"
import { Labels } from "./Ledger.ts"

/**
 * Usage charged by `record`.
 *
 * @example
 * ```ts
 * import { Recorded } from "effect-token-budget"
 *
 * const event: Recorded = { _tag: "Recorded", budget: "org/agent-7", tokens: 1200, usd: 0.0036 }
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export class Recorded extends Schema.Opaque<Recorded>()(Schema.TaggedStruct("Recorded", {
  budget: Schema.String,
  tokens: Schema.Number,
  usd: Schema.Number,
  labels: Schema.optional(Labels)
})) {}

/**
 * A hold taken by `reserve` or `withReservation`.
 *
 * @since 0.1.0
 * @category models
 */
export class Reserved extends Schema.Opaque<Reserved>()(Schema.TaggedStruct("Reserved", {
  budget: Schema.String,
  tokens: Schema.Number,
  usd: Schema.Number,
  labels: Schema.optional(Labels)
})) {}

/**
 * A hold settled by `commit`: what it charged, and how much of that went past
 * a cap. `estimated` is true when the commit carried no actual usage and so
 * charged the amounts held, as for an LLM call whose provider reported none.
 *
 * @since 0.1.0
 * @category models
 */
export class Committed extends Schema.Opaque<Committed>()(Schema.TaggedStruct("Committed", {
  budget: Schema.String,
  tokens: Schema.Number,
  usd: Schema.Number,
  tokensOverage: Schema.Number,
  usdOverage: Schema.Number,
  estimated: Schema.Boolean,
  labels: Schema.optional(Labels)
})) {}

/**
 * A hold given back without a charge: by `release`, or by its scope closing.
 *
 * @since 0.1.0
 * @category models
 */
export class Released extends Schema.Opaque<Released>()(Schema.TaggedStruct("Released", {
  budget: Schema.String,
  tokens: Schema.Number,
  usd: Schema.Number,
  labels: Schema.optional(Labels)
})) {}

/**
 * A request refused; `budget` is the budget whose limit refused it, and
 * `limit` which (its cap, its rate or its concurrency, as in
 * `BudgetExceeded`). The figures are tokens, dollars or requests, as `axis`
 * says. A rate's refusal says when to retry (`retryAfter`), as the error
 * does.
 *
 * @since 0.1.0
 * @category models
 */
export class Exceeded extends Schema.Opaque<Exceeded>()(Schema.TaggedStruct("Exceeded", {
  budget: Schema.String,
  limit: Limit,
  axis: LimitAxis,
  requested: Schema.Number,
  attempted: Schema.Number,
  cap: Schema.Number,
  retryAfter: Schema.optional(Schema.Duration)
})) {}

/**
 * Spending (used, not held) reached a threshold of a cap, such as 0.8 for
 * 80%. Fires once per threshold, axis and window. `used` and `cap` are
 * tokens or dollars, as `axis` says.
 *
 * @since 0.1.0
 * @category models
 */
export class ThresholdCrossed extends Schema.Opaque<ThresholdCrossed>()(Schema.TaggedStruct("ThresholdCrossed", {
  budget: Schema.String,
  axis: Axis,
  threshold: Schema.Number,
  used: Schema.Number,
  cap: Schema.Number
})) {}

/**
 * The budget started afresh: by `reset`, or because its window ended.
 * `windowEndsAt` is when the new window ends, in epoch milliseconds;
 * undefined without a window.
 *
 * @since 0.1.0
 * @category models
 */
export class Reset extends Schema.Opaque<Reset>()(Schema.TaggedStruct("Reset", {
  budget: Schema.String,
  windowEndsAt: Schema.UndefinedOr(Schema.Number)
})) {}

/**
 * A budget opened again with other caps than it had: by another process
 * (the same name on one Redis), or by `child` with other options. The caps
 * given last apply, for every process that shares the budget; the opening
 * process also logs a warning naming both. An axis without a cap reads
 * `Infinity`.
 *
 * @since 0.2.0
 * @category models
 */
export class Reconfigured extends Schema.Opaque<Reconfigured>()(Schema.TaggedStruct("Reconfigured", {
  budget: Schema.String,
  tokenCap: Schema.Number,
  usdCap: Schema.Number,
  previousTokenCap: Schema.Number,
  previousUsdCap: Schema.Number
})) {}

/**
 * The store lost a budget's state (Redis restarted without persistence,
 * evicted or flushed its keys, or failed over to a replica that missed
 * writes), seen by a process whose operation found it gone; `budget` is
 * the level whose state is gone. With `recreated: false`, operations on it
 * fail with `BudgetUnavailable` until it is made again (`reset`); with
 * `true`, the process made it again at once (`onStateLost: "recreate"`),
 * with nothing used. A process says so at most once a minute a budget,
 * with an error log too.
 *
 * @since 0.2.0
 * @category models
 */
export class StateLost extends Schema.Opaque<StateLost>()(Schema.TaggedStruct("StateLost", {
  budget: Schema.String,
  recreated: Schema.Boolean
})) {}

/**
 * Something that happened to a budget. `budget` is the path of the budget
 * it happened to (`org/tenant-a/agent-7`): for charges and holds the budget
 * they were made on, for a refusal the one that refused, for thresholds and
 * resets the one that crossed or restarted.
 *
 * It is also the Schema of every event, a tagged union on `_tag`: its
 * `guards`, `isAnyOf` and `match` work on events, and `Schema.toCodecJson`
 * of it encodes events as JSON (`windowEndsAt: undefined` as `null`) and
 * decodes them back, validated.
 *
 * @example
 * ```ts
 * import { Budget } from "effect-token-budget"
 * import { Effect, Stream } from "effect"
 *
 * const alerts = Effect.gen(function*() {
 *   const budget = yield* Budget
 *   yield* budget.events.pipe(
 *     Stream.filter((event) => event._tag === "ThresholdCrossed"),
 *     Stream.runForEach((event) => Effect.logWarning(`${event.budget} passed ${event.threshold * 100}% of its ${event.axis}`))
 *   )
 * })
 * ```
 *
 * @example
 * ```ts
 * import { Budget, BudgetEvent } from "effect-token-budget"
 * import { Effect, Schema, Stream } from "effect"
 *
 * // every event as a line of JSON (to log or forward it), and back, checked
 * const EventLine = Schema.fromJsonString(Schema.toCodecJson(BudgetEvent))
 *
 * const forward = (send: (line: string) => Effect.Effect<void>) =>
 *   Effect.gen(function*() {
 *     const budget = yield* Budget
 *     yield* budget.events.pipe(
 *       Stream.mapEffect((event) => Schema.encodeEffect(EventLine)(event)),
 *       Stream.runForEach(send)
 *     )
 *   })
 *
 * const read = Schema.decodeUnknownEffect(EventLine) // fails with a SchemaError on anything else
 * ```
 *
 * @since 0.1.0
 * @category models
 */
export const BudgetEvent = Schema.Union([
  Recorded,
  Reserved,
  Committed,
  Released,
  Exceeded,
  ThresholdCrossed,
  Reset,
  Reconfigured,
  StateLost
]).pipe(Schema.toTaggedUnion("_tag"))

/**
 * Something that happened to a budget: one of the events above.
 *
 * @since 0.1.0
 * @category models
 */
export type BudgetEvent = typeof BudgetEvent.Type
