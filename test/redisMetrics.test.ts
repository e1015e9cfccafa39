/**
 * Metrics of a Redis budget beyond the contract's (src/internal/testing/contract.ts):
 * counters count what this process did; gauges show the last snapshot,
 * refreshed in the background once a read finds it stale.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { series } from "../src/internal/testing/metrics.ts"
import { eventually } from "./support/poll.ts"
import { available, makeRedisBudget } from "./support/redis.ts"

describe.runIf(available)("metrics of a Redis budget", () => {
  it.live("counters count this process's operations at once; a stale gauge is refreshed by the read that finds it", () =>
    Effect.gen(function*() {
      const budget = yield* makeRedisBudget({ name: "redis-metrics", tokenCap: 1000 })
      yield* budget.record({ tokens: 10 })
      yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 30 }), (r) => r.commit({ tokens: 25 })))
      yield* budget.snapshot
      const taken = Date.now()
      const first = yield* series(budget.path)
      assert.deepStrictEqual([first["budget_tokens_used"], first["budget_committed_total"]], [35, 1])

      // Read until a read shows the record: no read refreshes a snapshot
      // younger than a second; the one that finds it older shows what it
      // found, and starts a new one.
      yield* budget.record({ tokens: 5 })
      const reads: Array<{ readonly age: number; readonly used: unknown }> = []
      yield* eventually(
        "a read shows the record",
        Effect.map(series(budget.path), (now) => {
          reads.push({ age: Date.now() - taken, used: now["budget_tokens_used"] })
          return now["budget_tokens_used"] === 40
        }),
        { every: "50 millis" }
      )
      const [stale, fresh] = reads.slice(-2)
      assert.deepStrictEqual(reads.slice(0, -1).map((read) => read.used), reads.slice(0, -1).map(() => 35))
      assert.isAtLeast(stale!.age, 950, "a younger snapshot was not refreshed")
      assert.isAtLeast(fresh!.age, 1_000)
    }))
})
