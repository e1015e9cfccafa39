import { Metric } from "effect"
import type { Context } from "effect"
import type { Snapshot } from "../Budget.ts"
import type { LimitAxis } from "../BudgetError.ts"

/*
 * The metrics every budget reports, in both stores: gauges of its counters
 * and counters of its settlements and refusals, each with the attribute
 * `budget = <path>`. They are pulled: read from the budget when a snapshot
 * of the metrics or an exporter asks, so keeping them costs the hot path
 * nothing.
 */

/** Where a budget's metrics are read from. */
export interface MetricsSource {
  readonly path: string
  /** The budget's counters; `undefined` reads as 0. */
  readonly snapshot: () => Snapshot | undefined
  /**
   * Settlements and refusals so far, read when exported; and, in a store
   * that can lose a budget's state (Redis), operations that found it lost.
   */
  readonly counts: {
    readonly committed: number
    readonly released: number
    readonly exceeded: number
    readonly lost?: number
    /** Events its streams dropped, having fallen behind. */
    readonly eventsDropped: number
  }
}

const gauges: ReadonlyArray<readonly [string, (snapshot: Snapshot) => number]> = [
  ["budget_tokens_used", (s) => s.tokensUsed],
  ["budget_usd_used", (s) => s.usdUsed],
  ["budget_tokens_reserved", (s) => s.tokensReserved],
  ["budget_usd_reserved", (s) => s.usdReserved],
  ["budget_tokens_remaining", (s) => s.tokensRemaining],
  ["budget_usd_remaining", (s) => s.usdRemaining]
]

const counters = [
  ["budget_committed_total", "committed"],
  ["budget_released_total", "released"],
  ["budget_exceeded_total", "exceeded"],
  ["budget_state_lost_total", "lost"],
  ["budget_events_dropped_total", "eventsDropped"]
] as const

const noop = () => {}

/**
 * Registers a budget's metrics in the `MetricRegistry` of `context`; returns
 * how to remove them. An axis with no cap reports no remaining: Infinity is
 * no number an exporter can carry.
 */
export const registerMetrics = (
  source: MetricsSource,
  caps: {
    readonly tokenCap: number
    readonly nanoCap: number
    readonly rates: ReadonlyArray<{ readonly axis: LimitAxis }>
    readonly maxConcurrent: number
  },
  context: Context.Context<never>
): () => void => {
  const attributes = { budget: source.path }
  const registrations: Array<{ readonly remove: () => void }> = []
  const gauge = (name: string, extra: Record<string, string>, value: (snapshot: Snapshot) => number) =>
    registrations.push(Metric.registerUnsafe(Metric.gauge(name, { attributes: { ...attributes, ...extra } }), context, {
      get: () => {
        const snapshot = source.snapshot()
        return { value: snapshot === undefined ? 0 : value(snapshot) }
      },
      update: noop,
      modify: noop
    }))
  for (const [name, value] of gauges) {
    if (name === "budget_tokens_remaining" && caps.tokenCap === Infinity) continue
    if (name === "budget_usd_remaining" && caps.nanoCap === Infinity) continue
    gauge(name, {}, value)
  }
  // What each axis of its rate holds now, and its holds in flight if it limits them.
  for (const { axis } of caps.rates) {
    gauge("budget_rate_available", { axis }, (s) => s.rates.find((rate) => rate.axis === axis)?.available ?? 0)
  }
  if (caps.maxConcurrent !== Infinity) gauge("budget_in_flight", {}, (s) => s.inFlight ?? 0)
  for (const [name, kind] of counters) {
    if (source.counts[kind] === undefined) continue
    registrations.push(Metric.registerUnsafe(Metric.counter(name, { attributes, incremental: true }), context, {
      get: () => ({ count: source.counts[kind] ?? 0, incremental: true }),
      update: noop,
      modify: noop
    }))
  }
  return () => {
    for (const registration of registrations) registration.remove()
  }
}
