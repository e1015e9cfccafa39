/**
 * Metrics of a Redis budget, as one process reports them: the same series
 * as in memory. Counters count what this process did; gauges show the last
 * snapshot, refreshed in the background once a read finds it stale.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import { series } from "./support/metrics.ts"
import { available, makeRedisBudget, settleRedis } from "./support/redis.ts"


describe.runIf(available)("metrics of a Redis budget", () => {
  it.live("counters of this process's operations, gauges from the last snapshot", () =>
    Effect.gen(function*() {
      const org = yield* makeRedisBudget({ name: "redis-metrics-org", tokenCap: 1000, usdCap: 1 })
      const agent = yield* org.child("agent", { tokenCap: 100 })
      yield* agent.record({ tokens: 10, usd: 0.1 })
      yield* agent.reserve({ tokens: 20, usd: 0.2 })
      yield* Effect.scoped(Effect.flatMap(agent.reserve({ tokens: 30 }), (r) => r.commit({ tokens: 25 })))
      yield* Effect.scoped(agent.reserve({ tokens: 5 }))
      yield* Effect.flip(agent.record({ tokens: 100 }))
      yield* agent.snapshot
      assert.deepStrictEqual(yield* series("redis-metrics-org/agent"), {
        budget_tokens_used: 35,
        budget_usd_used: 0.1,
        budget_tokens_reserved: 20,
        budget_usd_reserved: 0.2,
        budget_tokens_remaining: 45,
        budget_committed_total: 1,
        budget_released_total: 1,
        budget_exceeded_total: 1
      })
      const org_ = yield* series("redis-metrics-org")
      assert.deepStrictEqual([org_["budget_committed_total"], org_["budget_exceeded_total"]], [1, 0])

      // A stale snapshot is refreshed by the read that finds it so.
      yield* agent.record({ tokens: 5 })
      yield* Effect.sleep("1100 millis")
      assert.strictEqual((yield* series("redis-metrics-org/agent"))["budget_tokens_used"], 35)
      yield* settleRedis
      assert.strictEqual((yield* series("redis-metrics-org/agent"))["budget_tokens_used"], 40)
    }))

  it.effect("metrics: false registers none; a closed budget removes its own; a budget opened twice registers once", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(Effect.gen(function*() {
        const quiet = yield* makeRedisBudget({ name: "redis-quiet", metrics: false })
        yield* quiet.record({ tokens: 1 })
        assert.deepStrictEqual(yield* series("redis-quiet"), {})
        const loud = yield* makeRedisBudget({ name: "redis-loud" })
        const [a, b] = [yield* loud.child("a"), yield* loud.child("a")]
        yield* Effect.scoped(Effect.flatMap(a.reserve({ tokens: 1 }), (r) => r.commit()))
        yield* Effect.scoped(Effect.flatMap(b.reserve({ tokens: 1 }), (r) => r.commit()))
        const all = yield* Metric.snapshot
        assert.strictEqual(all.filter((s) => s.attributes?.["budget"] === "redis-loud/a" && s.id === "budget_committed_total").length, 1)
        assert.strictEqual((yield* series("redis-loud/a"))["budget_committed_total"], 2)
      }))
      assert.deepStrictEqual(yield* series("redis-loud"), {})
      assert.deepStrictEqual(yield* series("redis-loud/a"), {})
    }))
})
