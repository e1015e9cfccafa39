/**
 * Events that cross processes: the scripts publish each event as JSON on
 * `<tree>:events`, and every process listening decodes it here, through
 * Schema, into a `BudgetEvent`. A message that does not decode (not JSON,
 * an unknown tag, a missing or malformed field) is logged and dropped,
 * never misread.
 */
import { Effect, Result, Schema, SchemaTransformation, Stream } from "effect"
import type { Schedule } from "effect"
import type * as Redis from "effect/persistence/Redis"
import { Axis } from "../../BudgetError.ts"
import { BudgetEvent } from "../../BudgetEvent.ts"
import { usdFromNanos, usdToNanos } from "../../Usage.ts"
import * as Scripts from "./scripts.ts"

// Numbers leave Lua as strings (`S.int`, a threshold as it was stored, a
// flag as it came in ARGV); a number is read as well, should a script ever
// write one. Counts are whole and never negative.
const Count = Schema.Union([
  Schema.NumberFromString.check(Schema.isInt(), Schema.isGreaterThanOrEqualTo(0)),
  Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))
])
const Fraction = Schema.Union([Schema.FiniteFromString, Schema.Finite])
const Flag = Schema.Literals(["1", "0", 1, 0])

/** `tk` tokens and `n` nano-dollars: a charge, a hold, or a refused request. */
const amounts = { b: Schema.String, tk: Count, n: Count }

/**
 * The messages as the scripts publish them (`announce` in scripts.ts), by
 * their tag `t`; `b` is the budget's path. Amounts on the `usd` axis are
 * nano-dollars.
 */
const Published = Schema.Union([
  Schema.Struct({ t: Schema.Literal("Recorded"), ...amounts }),
  Schema.Struct({ t: Schema.Literal("Reserved"), ...amounts }),
  Schema.Struct({ t: Schema.Literal("Released"), ...amounts }),
  // `to` and `no`: the overage in tokens and nano-dollars; `e`: estimated
  Schema.Struct({ t: Schema.Literal("Committed"), ...amounts, to: Count, no: Count, e: Flag }),
  // `k`: used + reserved on the refusing axis `a`, before the request; `c`: its cap
  Schema.Struct({ t: Schema.Literal("Exceeded"), ...amounts, a: Axis, k: Count, c: Count }),
  // `th`: the threshold; `u` and `c`: used and the cap, on the axis `a`
  Schema.Struct({ t: Schema.Literal("ThresholdCrossed"), b: Schema.String, a: Axis, th: Fraction, u: Count, c: Count }),
  // `we`: when the new window ends (epoch ms), left out without a window
  Schema.Struct({ t: Schema.Literal("Reset"), b: Schema.String, we: Schema.optionalKey(Count) })
]).annotate({ expected: "an object whose t is a budget event's tag" })

type Published = typeof Published.Type

/** An amount on `axis`, in the library's terms: tokens, or dollars from nano-dollars. */
const onAxis = (axis: Axis, amount: number): number => axis === "tokens" ? amount : usdFromNanos(amount)
const toAxis = (axis: Axis, amount: number): number => axis === "tokens" ? amount : usdToNanos(amount)

const decode = (p: Published): BudgetEvent => {
  switch (p.t) {
    case "Recorded":
    case "Reserved":
    case "Released":
      return { _tag: p.t, budget: p.b, tokens: p.tk, usd: usdFromNanos(p.n) }
    case "Committed":
      return {
        _tag: p.t,
        budget: p.b,
        tokens: p.tk,
        usd: usdFromNanos(p.n),
        tokensOverage: p.to,
        usdOverage: usdFromNanos(p.no),
        estimated: p.e === "1" || p.e === 1
      }
    case "Exceeded": {
      const requested = p.a === "tokens" ? p.tk : p.n
      return {
        _tag: p.t,
        budget: p.b,
        axis: p.a,
        requested: onAxis(p.a, requested),
        attempted: onAxis(p.a, p.k + requested),
        cap: onAxis(p.a, p.c)
      }
    }
    case "ThresholdCrossed":
      return { _tag: p.t, budget: p.b, axis: p.a, threshold: p.th, used: onAxis(p.a, p.u), cap: onAxis(p.a, p.c) }
    case "Reset":
      return { _tag: p.t, budget: p.b, windowEndsAt: p.we }
  }
}

// The inverse, as a script would publish the event; an `Exceeded` carries
// only the refusing axis, so the other one's request is written as 0.
const encode = (e: BudgetEvent): Published => {
  switch (e._tag) {
    case "Recorded":
    case "Reserved":
    case "Released":
      return { t: e._tag, b: e.budget, tk: e.tokens, n: usdToNanos(e.usd) }
    case "Committed":
      return {
        t: e._tag,
        b: e.budget,
        tk: e.tokens,
        n: usdToNanos(e.usd),
        to: e.tokensOverage,
        no: usdToNanos(e.usdOverage),
        e: e.estimated ? "1" : "0"
      }
    case "Exceeded": {
      const requested = toAxis(e.axis, e.requested)
      return {
        t: e._tag,
        b: e.budget,
        a: e.axis,
        tk: e.axis === "tokens" ? requested : 0,
        n: e.axis === "usd" ? requested : 0,
        k: toAxis(e.axis, e.attempted) - requested,
        c: toAxis(e.axis, e.cap)
      }
    }
    case "ThresholdCrossed":
      return {
        t: e._tag,
        b: e.budget,
        a: e.axis,
        th: e.threshold,
        u: toAxis(e.axis, e.used),
        c: toAxis(e.axis, e.cap)
      }
    case "Reset":
      return e.windowEndsAt === undefined ? { t: e._tag, b: e.budget } : { t: e._tag, b: e.budget, we: e.windowEndsAt }
  }
}

/**
 * One message on `<tree>:events`, the JSON text a script published, as a
 * `BudgetEvent`. Encoding writes what a script would publish.
 */
export const Message = Schema.fromJsonString(
  Published.pipe(Schema.decodeTo(BudgetEvent, SchemaTransformation.transform({ decode, encode })))
)

const decodeMessage = Schema.decodeUnknownResult(Message)

/** What the event stream needs of a tree (the Redis store's `Tree`). */
interface Listening {
  readonly key: string
  readonly redis: Redis.Redis["Service"]
  readonly options: { readonly leaseMillis: number }
  /** This process's name in `<tree>:listeners`. */
  readonly process: string
}

/**
 * Events of the budget at `path` and below, from every process: the scripts
 * publish them on `<tree>:events` while some process is registered in
 * `<tree>:listeners`, as this one is for as long as the stream runs,
 * renewing its registration on `renewals`.
 */
export const events = (
  tree: Listening,
  root: { readonly key: string },
  path: string,
  renewals: Schedule.Schedule<unknown>
): Stream.Stream<BudgetEvent> => {
  const channel = `${tree.key}:events`
  const below = `${path}/`
  const listen = (millis: number) =>
    Effect.ignore(tree.redis.eval(Scripts.listen)(tree.key, root.key, tree.process, millis))
  return Stream.unwrap(Effect.gen(function*() {
    const messages = yield* tree.redis.subscribe(channel)
    yield* Effect.acquireRelease(listen(tree.options.leaseMillis), () => listen(0))
    yield* Effect.forkScoped(Effect.repeat(listen(tree.options.leaseMillis), renewals))
    return Stream.fromQueue(messages)
  })).pipe(
    Stream.filterMapEffect(({ message }) => {
      const decoded = decodeMessage(message)
      if (Result.isSuccess(decoded)) return Effect.succeed(decoded)
      // on one line, where a Schema issue's message spans several
      const why = decoded.failure.message.replace(/\s*\n\s*/g, " ")
      const warning = `Dropped a message on ${channel} that is not a budget event (${why}): ${message.slice(0, 500)}`
      return Effect.as(Effect.logWarning(warning), decoded)
    }),
    Stream.filter((event) => event.budget === path || event.budget.startsWith(below)),
    Stream.orDie
  )
}
