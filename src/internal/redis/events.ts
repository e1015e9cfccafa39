/**
 * Events that cross processes: the scripts publish each event as JSON on
 * `<tree>:events`, and every process listening decodes it here, through
 * Schema, into a `BudgetEvent`. A message that does not decode (not JSON,
 * an unknown tag, a missing or malformed field) is logged and dropped,
 * never misread.
 */
import { Cause, Duration, Effect, Option, Queue, Result, Schema, SchemaTransformation, Stream } from "effect"
import type * as Redis from "effect/persistence/Redis"
import { Axis, Limit, LimitAxis } from "../../BudgetError.ts"
import type { BudgetEvent } from "../../BudgetEvent.ts"
import { Labels } from "../../Ledger.ts"
import { Exceeded as ExceededEvent } from "../../BudgetEvent.ts"
import { usdFromNanos, usdToNanos } from "../../Usage.ts"
import { reportFailure } from "../report.ts"
import type { Subscribers } from "../subscribers.ts"
import * as HostTime from "../hostTime.ts"
import * as Scripts from "./scripts.ts"

// Numbers leave Lua as strings (`S.int`, a threshold as it was stored, a
// flag as it came in ARGV); a number is read as well, should a script ever
// write one. Counts are whole and never negative. Encoding writes strings,
// as the scripts do.
const Count = Schema.Union([
  Schema.NumberFromString.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0)),
  Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
])

/** Whole nano-dollars on the wire, dollars in the event. */
const Nanos = Count.pipe(
  Schema.decodeTo(Schema.Number, SchemaTransformation.transform({ decode: usdFromNanos, encode: usdToNanos }))
)

/** Keys the messages share: `t` the tag, `b` the budget's path, `tk` tokens, `n` nano-dollars. */
const short = { _tag: "t", budget: "b", tokens: "tk", usd: "n", labels: "lb" } as const

const charge = <Tag extends "Recorded" | "Reserved" | "Released">(tag: Tag) =>
  Schema.Struct({
    _tag: Schema.tag(tag),
    budget: Schema.String,
    tokens: Count,
    usd: Nanos,
    labels: Schema.optional(Labels)
  }).pipe(Schema.encodeKeys(short))

// `to` and `no`: the overage in tokens and nano-dollars; `e`: "1" when estimated.
const Committed = Schema.Struct({
  _tag: Schema.tag("Committed"),
  budget: Schema.String,
  tokens: Count,
  usd: Nanos,
  tokensOverage: Count,
  usdOverage: Nanos,
  estimated: Schema.Literals(["1", "0", 1, 0]).pipe(Schema.decodeTo(
    Schema.Boolean,
    SchemaTransformation.transform({ decode: (e) => e === "1" || e === 1, encode: (b) => b ? "1" : "0" })
  )),
  labels: Schema.optional(Labels)
}).pipe(Schema.encodeKeys({ ...short, tokensOverage: "to", usdOverage: "no", estimated: "e" }))

/** An amount on `axis` in the library's terms: tokens, or dollars from nano-dollars. */
const onAxis = (axis: LimitAxis, amount: number): number => axis === "usd" ? usdFromNanos(amount) : amount
const toAxis = (axis: LimitAxis, amount: number): number => axis === "usd" ? usdToNanos(amount) : amount

// `a`: the refusing axis; `k`: used + reserved on it before the request;
// `c`: its cap; `tk` and `n`: the request. The event keeps the request on
// the refusing axis only (summed with `k` in whole units, then converted),
// so encoding writes the other axis as 0.
// `l`: the limit that refused, left out for a cap. A request on the
// `requests` axis travels in `tk`. For a rate, `k` (what its bucket lent)
// and `c` (its capacity) may have a fraction.
const Level = Schema.Union([Schema.FiniteFromString, Schema.Finite]).check(Schema.isGreaterThanOrEqualTo(0))
const Exceeded = Schema.Struct({
  t: Schema.tag("Exceeded"),
  b: Schema.String,
  l: Schema.optionalKey(Limit),
  a: LimitAxis,
  k: Level,
  c: Level,
  tk: Count,
  n: Count,
  // a rate's retry, in milliseconds
  r: Schema.optionalKey(Count)
}).pipe(Schema.decodeTo(
  ExceededEvent,
  SchemaTransformation.transform({
    decode: ({ a, b, c, k, l, n, r, tk }): typeof ExceededEvent.Encoded => {
      const requested = a === "usd" ? n : tk
      return {
        _tag: "Exceeded" as const,
        budget: b,
        limit: l ?? "cap",
        axis: a,
        requested: onAxis(a, requested),
        attempted: onAxis(a, k + requested),
        cap: onAxis(a, c),
        ...(r === undefined ? {} : { retryAfter: Duration.millis(r) })
      }
    },
    encode: ({ attempted, axis, budget, cap, limit, requested, retryAfter }) => {
      const request = toAxis(axis, requested)
      return {
        t: "Exceeded" as const,
        b: budget,
        ...(limit === "cap" ? {} : { l: limit }),
        a: axis,
        k: toAxis(axis, attempted) - request,
        c: toAxis(axis, cap),
        tk: axis === "usd" ? 0 : request,
        n: axis === "usd" ? request : 0,
        ...(retryAfter === undefined ? {} : { r: Math.ceil(Duration.toMillis(retryAfter)) })
      }
    }
  })
))

// `th`: the threshold; `u` and `c`: used and the cap, in the units of the axis `a`.
const thresholdCrossed = <A extends Axis>(axis: A, Amount: typeof Count | typeof Nanos) =>
  Schema.Struct({
    _tag: Schema.tag("ThresholdCrossed"),
    budget: Schema.String,
    axis: Schema.Literal(axis),
    threshold: Schema.Union([Schema.FiniteFromString, Schema.Finite]),
    used: Amount,
    cap: Amount
  }).pipe(Schema.encodeKeys({ _tag: "t", budget: "b", axis: "a", threshold: "th", used: "u", cap: "c" }))

// `we`: when the new window ends (epoch ms), left out without a window.
const Reset = Schema.Struct({
  _tag: Schema.tag("Reset"),
  budget: Schema.String,
  windowEndsAt: Schema.optionalKey(Count).pipe(Schema.decodeTo(
    Schema.UndefinedOr(Schema.Number),
    SchemaTransformation.transformOptional({
      decode: (we) => Option.some(Option.getOrUndefined(we)),
      encode: (end) => Option.flatMap(end, Option.fromUndefinedOr)
    })
  ))
}).pipe(Schema.encodeKeys({ _tag: "t", budget: "b", windowEndsAt: "we" }))

// A cap as the scripts keep it: whole tokens or nano-dollars, -1 for none.
const capOn = (axis: Axis) =>
  Schema.Union([
    Schema.NumberFromString.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(-1)),
    Schema.Int.check(Schema.isGreaterThanOrEqualTo(-1))
  ]).pipe(Schema.decodeTo(
    Schema.Number,
    SchemaTransformation.transform({
      decode: (cap) => cap < 0 ? Infinity : onAxis(axis, cap),
      encode: (cap) => cap === Infinity ? -1 : toAxis(axis, cap)
    })
  ))

// `tc` and `nc`: the caps now; `ptc` and `pnc`: the caps before.
const Reconfigured = Schema.Struct({
  _tag: Schema.tag("Reconfigured"),
  budget: Schema.String,
  tokenCap: capOn("tokens"),
  usdCap: capOn("usd"),
  previousTokenCap: capOn("tokens"),
  previousUsdCap: capOn("usd")
}).pipe(Schema.encodeKeys({
  _tag: "t",
  budget: "b",
  tokenCap: "tc",
  usdCap: "nc",
  previousTokenCap: "ptc",
  previousUsdCap: "pnc"
}))

// `r`: "1" when the process that saw the loss made the budget again.
const StateLost = Schema.Struct({
  _tag: Schema.tag("StateLost"),
  budget: Schema.String,
  recreated: Schema.Literals(["1", "0"]).pipe(Schema.decodeTo(
    Schema.Boolean,
    SchemaTransformation.transform({ decode: (r) => r === "1", encode: (b) => b ? "1" : "0" })
  ))
}).pipe(Schema.encodeKeys({ _tag: "t", budget: "b", recreated: "r" }))

/**
 * The messages as the scripts publish them (`announce` in lua/events.ts),
 * and as a process publishes `StateLost` (store.ts), each decoded into its
 * `BudgetEvent`.
 */
const Published = Schema.Union([
  charge("Recorded"),
  charge("Reserved"),
  charge("Released"),
  Committed,
  Exceeded,
  thresholdCrossed("tokens", Count),
  thresholdCrossed("usd", Nanos),
  Reset,
  Reconfigured,
  StateLost
]).annotate({ expected: "an object whose t is a budget event's tag" })

/**
 * One message on `<tree>:events`, the JSON text a script published, as a
 * `BudgetEvent`. Encoding writes what a script would publish.
 */
export const Message = Schema.fromJsonString(Published)

const decodeMessage = Schema.decodeUnknownResult(Message)

/** What the event stream needs of a tree (the Redis store's `Tree`). */
interface Listening {
  readonly key: string
  readonly redis: Redis.Redis["Service"]
  readonly options: { readonly leaseMillis: number }
  /** This process's name in `<tree>:listeners`. */
  readonly process: string
  /** This process's streams of the tree, each with a bounded buffer, ended with the tree. */
  readonly subscribers: Subscribers
}

/**
 * Events of the budget at `path` and below, from every process: the scripts
 * publish them on `<tree>:events` while some process is registered in
 * `<tree>:listeners`, as this one is for as long as the stream runs,
 * renewing its registration every `renewMillis` of the host's time. A
 * fiber moves each message, decoded, into the stream's own bounded buffer
 * (subscribers.ts), counting with `dropped` what a slow reader lost.
 */
export const events = (
  tree: Listening,
  root: { readonly key: string },
  path: string,
  renewMillis: number,
  dropped: () => void
): Stream.Stream<BudgetEvent> => {
  const channel = `${tree.key}:events`
  const listen = (millis: number) =>
    tree.redis.eval(Scripts.listen)(tree.key, root.key, tree.process, millis).pipe(
      reportFailure(`Budget tree "${tree.key}": could not register this process as listening for events`)
    )
  const decoded = (message: string): Effect.Effect<BudgetEvent | undefined> => {
    const result = decodeMessage(message)
    if (Result.isSuccess(result)) return Effect.succeed(result.success)
    // on one line, where a Schema issue's message spans several
    const why = result.failure.message.replace(/\s*\n\s*/g, " ")
    const warning = `Dropped a message on ${channel} that is not a budget event (${why}): ${message.slice(0, 500)}`
    return Effect.as(Effect.logWarning(warning), undefined)
  }
  return Stream.unwrap(Effect.gen(function*() {
    const messages = yield* tree.redis.subscribe(channel)
    const subscriber = yield* tree.subscribers.subscribe(path, dropped)
    yield* Effect.acquireRelease(listen(tree.options.leaseMillis), () => listen(0))
    yield* Effect.forkScoped(HostTime.every(renewMillis, listen(tree.options.leaseMillis)))
    yield* Effect.forkScoped(
      Effect.forever(Effect.flatMap(Queue.take(messages), ({ message }) =>
        Effect.map(decoded(message), (event) => {
          if (event !== undefined) subscriber.offer(event)
        }))).pipe(
          // A subscription that fails (a client that does not reconnect) ends the stream with it.
          Effect.catchCause((cause) => Effect.sync(() => Queue.failCauseUnsafe(subscriber.queue, Cause.die(Cause.squash(cause)))))
        )
    )
    return Stream.fromQueue(subscriber.queue)
  }))
}
