/**
 * The typed errors of a budget: a refused request, bad input, and a store
 * that could not be reached.
 *
 * @since 0.1.0
 */
import { Duration, Formatter, Schema } from "effect"
import { causeText } from "./internal/causeText.ts"

/**
 * Which side of a budget a figure belongs to.
 *
 * @since 0.1.0
 * @category models
 */
export type Axis = "tokens" | "usd"

/**
 * The Schema of an {@link Axis}: `"tokens"` or `"usd"`.
 *
 * @since 0.1.0
 * @category models
 */
export const Axis: Schema.Literals<readonly ["tokens", "usd"]> = Schema.Literals(["tokens", "usd"])

/**
 * What a rate or a concurrency limit counts beside the two axes of a cap:
 * requests (every `record` and `reserve` is one).
 *
 * @since 0.3.0
 * @category models
 */
export type LimitAxis = Axis | "requests"

/**
 * The Schema of a {@link LimitAxis}.
 *
 * @since 0.3.0
 * @category models
 */
export const LimitAxis: Schema.Literals<readonly ["tokens", "usd", "requests"]> = Schema.Literals([
  "tokens",
  "usd",
  "requests"
])

/**
 * Which limit of a budget refused a request: its `cap`, its `rate`, or its
 * `concurrency` (`maxConcurrent` holds in flight).
 *
 * @since 0.3.0
 * @category models
 */
export type Limit = "cap" | "rate" | "concurrency"

/**
 * The Schema of a {@link Limit}.
 *
 * @since 0.3.0
 * @category models
 */
export const Limit: Schema.Literals<readonly ["cap", "rate", "concurrency"]> = Schema.Literals([
  "cap",
  "rate",
  "concurrency"
])

const describe = (axis: LimitAxis, amount: number): string =>
  axis === "tokens" ? `${amount} tokens` : axis === "usd" ? `$${amount}` : `${amount} request${amount === 1 ? "" : "s"}`

// What a bucket holds, as a person reads it: whole tokens and requests,
// nano-dollars, and debt as such.
const held = (axis: LimitAxis, level: number): string => {
  const amount = axis === "usd" ? Math.round(level * 1e9) / 1e9 : Math.floor(level)
  return amount < 0 ? `nothing (it is ${describe(axis, -amount)} in debt)` : describe(axis, amount)
}

/**
 * A request refused because one limit of a budget would not admit it;
 * nothing was charged or held. `limit` says which:
 *
 * - `"cap"`: `attempted` (used + reserved + requested) is greater than `cap`
 *   on `axis`.
 * - `"rate"`: the rate's bucket on `axis` (`"requests"` included) holds
 *   less than `requested`: `attempted` is what the bucket would have lent
 *   (its capacity less what is left, plus `requested`), `cap` its capacity,
 *   and `retryAfter` how long until it will have refilled enough.
 * - `"concurrency"`: `cap` holds are in flight already (`maxConcurrent`);
 *   `axis` is `"requests"`.
 *
 * @example
 * ```ts
 * import { Budget } from "effect-token-budget"
 * import { Effect } from "effect"
 *
 * const guarded = Effect.gen(function*() {
 *   const budget = yield* Budget
 *   yield* budget.record({ tokens: 500 })
 * }).pipe(Effect.catchTag("BudgetExceeded", (e) => Effect.logWarning(e.message)))
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class BudgetExceeded extends Schema.TaggedError<BudgetExceeded>()("BudgetExceeded", {
  budget: Schema.String,
  limit: Limit,
  axis: LimitAxis,
  requested: Schema.Number,
  attempted: Schema.Number,
  cap: Schema.Number,
  retryAfter: Schema.optional(Schema.Duration)
}) {
  override get message(): string {
    const refused = `Budget "${this.budget}" refused ${describe(this.axis, this.requested)}`
    if (this.limit === "concurrency") {
      return `${refused}: ${this.cap} holds are in flight already, its maxConcurrent; ` +
        `reserve with onExceeded: "wait" to queue for a place`
    }
    if (this.limit === "rate") {
      const left = held(this.axis, this.cap - this.attempted + this.requested)
      const after = this.retryAfter === undefined
        ? `, and could not hold it even when full: ask for less, or give its rate a larger burst`
        : `; retry after ${Duration.format(this.retryAfter)}, or reserve with onExceeded: "wait" to queue`
      return `${refused}: its rate's bucket holds ${left} of ${describe(this.axis, this.cap)} now${after}`
    }
    return `${refused}: used + reserved + requested would be ${describe(this.axis, this.attempted)}, ` +
      `over its cap of ${describe(this.axis, this.cap)}`
  }
}

/**
 * An amount or a cap that is not a usable number: negative, NaN, infinite,
 * fractional tokens, or too large to count exactly. Nothing was changed.
 * `field` names what was wrong (`usage.tokens`, `actual.usd`, `usdCap`).
 *
 * @example
 * ```ts
 * import { Budget } from "effect-token-budget"
 * import { Effect } from "effect"
 *
 * // tokens must be whole: "Invalid usage.tokens: must be a whole number from 0 to 9007199254740991, got 1.5"
 * const bad = Effect.gen(function*() {
 *   const budget = yield* Budget
 *   yield* budget.record({ tokens: 1.5 })
 * }).pipe(Effect.catchTag("InvalidUsage", (e) => Effect.logError(e.message)))
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidUsage extends Schema.TaggedError<InvalidUsage>()("InvalidUsage", {
  field: Schema.String,
  value: Schema.Unknown,
  reason: Schema.String
}) {
  override get message(): string {
    return `Invalid ${this.field}: ${this.reason}, got ${received(this.value)}`
  }
}


// A received value, unambiguous: `"0.01" (a string)` is not the number 0.01,
// `""` is visibly empty; numbers, `undefined`, `null` and objects as
// `Formatter.format` writes them.
const received = (value: unknown): string =>
  typeof value === "string" && value.length > 0 ? `${JSON.stringify(value)} (a string)` : Formatter.format(value)

/**
 * A remote store (Redis, say) could not answer; `cause` says why. What it
 * means for each operation:
 *
 * - `record`: unknown. It may have been charged (its reply was lost, or
 *   Redis ran it after the timeout). Retry it only with an idempotency key
 *   (`{ id }`): with the same key, it charges once.
 * - `reserve`: no hold reached you. One it may have made is never renewed
 *   and lapses with its lease; retried with the same `{ id }`, it gets
 *   that hold.
 * - `commit`: unknown, and safe to retry: a hold is charged once however
 *   often and late its commit is retried while its process lives (the
 *   closing scope retries it). `release`: the hold lapses with its lease.
 * - `snapshot`, opening a budget: nothing changed. `reset`: it may have run.
 *
 * Within its timeout, the Redis store itself sends again what may have
 * run and is safe to run again (settlements, reserves, records with an
 * id). A budget whose state Redis lost fails with it too, with the cause
 * `BudgetStateLost`. The in-memory store never raises it.
 *
 * @example
 * ```ts
 * import { Budget } from "effect-token-budget"
 * import { Effect, Schedule } from "effect"
 *
 * const call = Effect.scoped(Effect.gen(function*() {
 *   const budget = yield* Budget
 *   const hold = yield* budget.reserve({ tokens: 2000 }).pipe(
 *     Effect.retry({
 *       while: (e) => e._tag === "BudgetUnavailable",
 *       schedule: Schedule.exponential("100 millis"),
 *       times: 3
 *     })
 *   )
 *   yield* hold.commit({ tokens: 1800 })
 * }))
 * ```
 *
 * @since 0.1.0
 * @category errors
 */
export class BudgetUnavailable extends Schema.TaggedError<BudgetUnavailable>()("BudgetUnavailable", {
  budget: Schema.String,
  cause: Schema.Defect()
}) {
  override get message(): string {
    const text = `Budget "${this.budget}" is unavailable: ${causeText(this.cause)}`
    if (this.cause instanceof BudgetStateLost || this.cause instanceof LedgerBacklogFull) return text
    if (this.cause instanceof LedgerUnavailable) {
      return `${text}. It is being rebuilt from the ledger (onStateLost: "restore"), which did not answer: ` +
        `retried by the next operation`
    }
    return `${text}. Check that its store (Redis) is up and reachable; BudgetUnavailable's documentation says what a retry charges`
  }
}

/**
 * The cause of a `BudgetUnavailable` when the store lost a budget's state:
 * Redis restarted without persistence, evicted or flushed its keys, or
 * failed over to a replica that missed writes. `budget` is the level whose
 * state is gone (the budget itself or one above it). Nothing is charged or
 * held there, never as if it had no cap, until it is made again on
 * purpose: `reset` on it makes it again with nothing used, and so does a
 * Redis store opened with `onStateLost: "recreate"` (see
 * docs/distributed.md#lost-state).
 *
 * @since 0.2.0
 * @category errors
 */
export class BudgetStateLost extends Schema.TaggedError<BudgetStateLost>()("BudgetStateLost", {
  budget: Schema.String
}) {
  override get message(): string {
    return `the state of budget "${this.budget}" is gone from Redis (a restart without persistence, an eviction, ` +
      `a flush or a failover lost it), so nothing is charged or held on it: call reset on it to make it again ` +
      `with nothing used, or open the store with onStateLost: "recreate"; to keep budgets across restarts, run ` +
      `Redis with appendonly yes and maxmemory-policy noeviction (docs/distributed.md#lost-state)`
  }
}

/**
 * Why a store refuses new charges: its outbox holds `maxBacklog` entries
 * its sink has not taken. The cause of a `BudgetUnavailable`; commits are
 * still charged and written.
 *
 * @since 0.3.0
 * @category errors
 */
export class LedgerBacklogFull extends Schema.TaggedError<LedgerBacklogFull>()("LedgerBacklogFull", {
  sink: Schema.String,
  backlog: Schema.Number
}) {
  override get message(): string {
    return `its ledger outbox holds ${this.backlog} entries that sink "${this.sink}" has not taken (its maxBacklog), ` +
      `so new charges are refused until the sink takes them; commits are still charged and written. Check the ` +
      `sink (the budget_ledger_backlog gauge shows the outbox), or give it a larger maxBacklog`
  }
}

/**
 * A sink that did not take a batch: its entries stay in the outbox and are
 * handed over again, with a backoff, until it does.
 *
 * @since 0.3.0
 * @category errors
 */
export class LedgerUnavailable extends Schema.TaggedError<LedgerUnavailable>()("LedgerUnavailable", {
  sink: Schema.String,
  cause: Schema.Defect()
}) {
  override get message(): string {
    return `Ledger sink "${this.sink}" did not take a batch: ${causeText(this.cause)}. Its entries wait in the outbox and are ` +
      `written when it answers`
  }
}
