/**
 * What happens to a budget, as a stream of events: every charge, hold,
 * refusal, threshold and reset, each naming the budget's path.
 *
 * @since 0.1.0
 */
import type { Axis } from "./BudgetError.ts"

/**
 * Something that happened to a budget. `budget` is the path of the budget
 * it happened to (`org/tenant-a/agent-7`): for charges and holds the budget
 * they were made on, for a refusal the one that refused, for thresholds and
 * resets the one that crossed or restarted.
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
 * @since 0.1.0
 * @category models
 */
export type BudgetEvent = Recorded | Reserved | Committed | Released | Exceeded | ThresholdCrossed | Reset

/**
 * Usage charged by `record`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Recorded {
  readonly _tag: "Recorded"
  readonly budget: string
  readonly tokens: number
  readonly usd: number
}

/**
 * A hold taken by `reserve` or `withReservation`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Reserved {
  readonly _tag: "Reserved"
  readonly budget: string
  readonly tokens: number
  readonly usd: number
}

/**
 * A hold settled by `commit`: what it charged, and how much of that went past
 * a cap. `estimated` is true when the commit carried no actual usage and so
 * charged the amounts held, as for an LLM call whose provider reported none.
 *
 * @since 0.1.0
 * @category models
 */
export interface Committed {
  readonly _tag: "Committed"
  readonly budget: string
  readonly tokens: number
  readonly usd: number
  readonly tokensOverage: number
  readonly usdOverage: number
  readonly estimated: boolean
}

/**
 * A hold given back without a charge: by `release`, or by its scope closing.
 *
 * @since 0.1.0
 * @category models
 */
export interface Released {
  readonly _tag: "Released"
  readonly budget: string
  readonly tokens: number
  readonly usd: number
}

/**
 * A request refused; `budget` is the budget whose cap refused it.
 *
 * @since 0.1.0
 * @category models
 */
export interface Exceeded {
  readonly _tag: "Exceeded"
  readonly budget: string
  readonly axis: Axis
  readonly requested: number
  readonly attempted: number
  readonly cap: number
}

/**
 * Spending (used, not held) reached a threshold of a cap, such as 0.8 for
 * 80%. Fires once per threshold, axis and window.
 *
 * @since 0.1.0
 * @category models
 */
export interface ThresholdCrossed {
  readonly _tag: "ThresholdCrossed"
  readonly budget: string
  readonly axis: Axis
  readonly threshold: number
  readonly used: number
  readonly cap: number
}

/**
 * The budget started afresh: by `reset`, or because its window ended.
 *
 * @since 0.1.0
 * @category models
 */
export interface Reset {
  readonly _tag: "Reset"
  readonly budget: string
  /** When the new window ends, in epoch milliseconds; undefined without a window. */
  readonly windowEndsAt: number | undefined
}
