import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Budget, BudgetExceeded, BudgetUnavailable, InvalidUsage } from "../src/index.ts"

describe("error messages name the budget, the axis or field, and the numbers", () => {
  it.effect("BudgetExceeded on tokens", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "tenant-a", tokenCap: 1000 })
      yield* budget.record({ tokens: 900 })
      const error = yield* Effect.flip(budget.record({ tokens: 200 }))
      assert.strictEqual(
        error.message,
        `Budget "tenant-a" refused 200 tokens: used + reserved + requested would be 1100 tokens, over its cap of 1000 tokens`
      )
    }))

  it.effect("BudgetExceeded on dollars reads exact amounts", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "evals", usdCap: 10 })
      yield* budget.record({ usd: 9.9964 })
      const error = yield* Effect.flip(budget.record({ usd: 0.0037 }))
      assert.strictEqual(
        error.message,
        `Budget "evals" refused $0.0037: used + reserved + requested would be $10.0001, over its cap of $10`
      )
    }))

  it("InvalidUsage says which field, what it must be, and what it got", () => {
    const error = new InvalidUsage({ field: "usage.tokens", value: -3, reason: "must be a whole number from 0 to 9007199254740991" })
    assert.strictEqual(error.message, "Invalid usage.tokens: must be a whole number from 0 to 9007199254740991, got -3")
    assert.strictEqual(error._tag, "InvalidUsage")
  })

  it.effect("InvalidUsage from a commit names the actual", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ tokenCap: 10 })
      const r = yield* budget.reserve({ tokens: 5 })
      const error = yield* Effect.flip(r.commit({ usd: NaN }))
      assert.strictEqual(error.message, "Invalid actual.usd: must be a number from 0 to 9007199, got NaN")
    }))

  it.effect("InvalidUsage shows what it got unambiguously: strings quoted, empty ones visible", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "evals" })
      // a string that reads like a valid number must not look like one
      const usd = yield* Effect.flip(budget.record({ usd: "0.01" as unknown as number }))
      assert.strictEqual(usd.message, `Invalid usage.usd: must be a number from 0 to 9007199, got "0.01" (a string)`)
      const tokens = yield* Effect.flip(budget.record({ tokens: "5" as unknown as number }))
      assert.strictEqual(
        tokens.message,
        `Invalid usage.tokens: must be a whole number from 0 to 9007199254740991, got "5" (a string)`
      )
      const usage = yield* Effect.flip(budget.record(null as unknown as { tokens: number }))
      assert.strictEqual(usage.message, "Invalid usage: expected an object like { tokens, usd }, got null")
      const name = yield* Effect.flip(Budget.make({ name: "" }))
      assert.strictEqual(name.message, `Invalid name: must be a non-empty string without "/", got ""`)
      const thresholds = yield* Effect.flip(Budget.make({ thresholds: [0.5, 2] }))
      assert.strictEqual(
        thresholds.message,
        "Invalid thresholds: must be fractions of a cap, each greater than 0 and at most 1 (0.8 for 80%), got [0.5,2]"
      )
    }))

  it("InvalidUsage names undefined and null", () => {
    const missing = new InvalidUsage({ field: "usage.usd", value: undefined, reason: "must be a number" })
    assert.strictEqual(missing.message, "Invalid usage.usd: must be a number, got undefined")
    const empty = new InvalidUsage({ field: "name", value: null, reason: "must be a non-empty string" })
    assert.strictEqual(empty.message, "Invalid name: must be a non-empty string, got null")
  })

  it("BudgetUnavailable names its cause and what to do", () => {
    const error = new BudgetUnavailable({ budget: "shared", cause: new Error("connection refused") })
    assert.strictEqual(
      error.message,
      `Budget "shared" is unavailable: connection refused. Check that its store (Redis) is up and reachable; ` +
        `BudgetUnavailable's documentation says what a retry charges`
    )
    // A refused connection to a host with several addresses: an AggregateError with no message of its own.
    const refused = new AggregateError([
      Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6391"), { code: "ECONNREFUSED" }),
      Object.assign(new Error("connect ECONNREFUSED ::1:6391"), { code: "ECONNREFUSED" })
    ], "")
    assert.include(
      new BudgetUnavailable({ budget: "shared", cause: refused }).message,
      `unavailable: connect ECONNREFUSED 127.0.0.1:6391; connect ECONNREFUSED ::1:6391.`
    )
    assert.include(new BudgetUnavailable({ budget: "shared", cause: "timed out" }).message, "unavailable: timed out.")
  })

  it("errors are tagged for catchTag", () => {
    const error = new BudgetExceeded({ budget: "b", limit: "cap", axis: "usd", requested: 1, attempted: 2, cap: 1 })
    assert.strictEqual(error._tag, "BudgetExceeded")
    assert.instanceOf(error, Error)
  })
})
