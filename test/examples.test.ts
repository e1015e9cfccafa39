import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { run as runAgents } from "../examples/agent.ts"
import { run } from "../examples/fanout.ts"

describe("examples/fanout.ts", () => {
  it.effect("runs out part-way, never past a cap, with no hold left", () =>
    Effect.gen(function*() {
      const report = yield* run({ seed: 7, paced: false, quiet: true })
      assert.deepStrictEqual(report.problems, [])
      assert.isTrue(report.ok)
      assert.strictEqual(report.completed + report.refused.tokens + report.refused.usd + report.failed, report.calls)
      assert.isAbove(report.refused.tokens + report.refused.usd, 0)
      assert.isAbove(report.completed, report.calls / 3)
      assert.strictEqual(report.final.tokensReserved, 0)
    }))

  it.effect("a seed repeats the run exactly", () =>
    Effect.gen(function*() {
      const first = yield* run({ seed: 7, paced: false, quiet: true })
      const again = yield* run({ seed: 7, paced: false, quiet: true })
      assert.deepStrictEqual(again, first)
      const other = yield* run({ seed: 8, paced: false, quiet: true })
      assert.notDeepEqual(other, first)
    }))
})

describe("examples/agent.ts", () => {
  it.effect("each agent spends within its own cap, the critic is stopped, the agents add up to the team", () =>
    Effect.gen(function*() {
      const report = yield* runAgents({ quiet: true })
      assert.deepStrictEqual(report.problems, [])
      assert.isTrue(report.ok)
      assert.deepStrictEqual(report.agents.map((a) => [a.name, a.refused]), [
        ["planner", 0],
        ["researcher", 0],
        ["writer", 0],
        ["critic", 1]
      ])
      for (const agent of report.agents) assert.isAbove(agent.spent.usdUsed, 0)
      assert.strictEqual(report.team.tokensReserved, 0)
    }))
})
