import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { run } from "../examples/fanout.ts"

describe("examples/fanout.ts", () => {
  it.live("runs out part-way, never past a cap, with no hold left", () =>
    Effect.gen(function*() {
      const report = yield* run({ seed: 7, latencyScale: 0.02, quiet: true })
      assert.deepStrictEqual(report.problems, [])
      assert.isTrue(report.ok)
      assert.strictEqual(report.completed + report.refused.tokens + report.refused.usd + report.failed, report.calls)
      assert.isAbove(report.refused.tokens + report.refused.usd, 0)
      assert.isAbove(report.completed, report.calls / 3)
      assert.strictEqual(report.final.tokensReserved, 0)
    }))
})
