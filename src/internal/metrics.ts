import { Metric } from "effect"
import type { Context } from "effect"
import type { Snapshot } from "../Budget.ts"

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
  readonly committed: () => number
  readonly released: () => number
  readonly exceeded: () => number
}

const gauges: ReadonlyArray<readonly [string, (snapshot: Snapshot) => number]> = [
  ["budget_tokens_used", (s) => s.tokensUsed],
  ["budget_usd_used", (s) => s.usdUsed],
  ["budget_tokens_reserved", (s) => s.tokensReserved],
  ["budget_usd_reserved", (s) => s.usdReserved],
  ["budget_tokens_remaining", (s) => s.tokensRemaining],
  ["budget_usd_remaining", (s) => s.usdRemaining]
]

const counters = ["committed", "released", "exceeded"] as const

const noop = () => {}

/**
 * Registers a budget's metrics in the `MetricRegistry` of `context`; returns
 * how to remove them. An axis with no cap reports no remaining: Infinity is
 * no number an exporter can carry.
 */
export const registerMetrics = (
  source: MetricsSource,
  capped: { readonly tokens: boolean; readonly usd: boolean },
  context: Context.Context<never>
): () => void => {
  const attributes = { budget: source.path }
  const reported = gauges.filter(([name]) =>
    name === "budget_tokens_remaining" ? capped.tokens : name === "budget_usd_remaining" ? capped.usd : true
  )
  const registrations = [
    ...reported.map(([name, value]) =>
      Metric.registerUnsafe(Metric.gauge(name, { attributes }), context, {
        get: () => {
          const snapshot = source.snapshot()
          return { value: snapshot === undefined ? 0 : value(snapshot) }
        },
        update: noop,
        modify: noop
      })
    ),
    ...counters.map((kind) =>
      Metric.registerUnsafe(Metric.counter(`budget_${kind}_total`, { attributes, incremental: true }), context, {
        get: () => ({ count: source[kind](), incremental: true }),
        update: noop,
        modify: noop
      })
    )
  ]
  return () => {
    for (const registration of registrations) registration.remove()
  }
}
