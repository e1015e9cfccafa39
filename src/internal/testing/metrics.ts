import { Effect, Metric } from "effect"

/** The metrics of one budget, by name: a gauge's value, a counter's count. */
export const series = (budget: string) =>
  Effect.map(Metric.snapshot, (all) =>
    Object.fromEntries(
      all.filter((s) => s.attributes?.["budget"] === budget).map((s) => [
        s.id,
        "value" in s.state ? s.state.value : "count" in s.state ? s.state.count : undefined
      ])
    ))
