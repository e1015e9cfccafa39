/**
 * Metrics of a Redis budget beyond the contract's (src/internal/testing/contract.ts):
 * counters count what this process did; gauges show the last snapshot,
 * refreshed in the background once a read finds it stale.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { series } from "../src/internal/testing/metrics.ts"
import { available, makeRedisBudget, settleRedis } from "./support/redis.ts"

describe.runIf(available)("metrics of a Redis budget", () => {
  it.live("counters count this process's operations at once; a stale gauge is refreshed by the read that finds it", () =>
    Effect.gen(function*() {
      const budget = yield* makeRedisBudget({ name: "redis-metrics", tokenCap: 1000 })
      yield* budget.record({ tokens: 10 })
      yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 30 }), (r) => r.commit({ tokens: 25 })))
      yield* budget.snapshot
      const first = yield* series(budget.path)
      assert.deepStrictEqual([first["budget_tokens_used"], first["budget_committed_total"]], [35, 1])

      yield* budget.record({ tokens: 5 })
      yield* Effect.sleep("1100 millis")
      // The read shows the snapshot it found, and starts a new one.
      assert.strictEqual((yield* series(budget.path))["budget_tokens_used"], 35)
      yield* settleRedis
      assert.strictEqual((yield* series(budget.path))["budget_tokens_used"], 40)
    }))
})
