import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Redis from "effect/persistence/Redis"
import { Budget, LedgerUnavailable } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { capturingLogs } from "./support/logs.ts"

describe("error messages name the budget, the axis or field, and the numbers", () => {
  it.effect("BudgetExceeded on tokens, caught by its tag", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "tenant-a", tokenCap: 1000 })
      yield* budget.record({ tokens: 900 })
      const message = yield* budget.record({ tokens: 200 }).pipe(
        Effect.as("charged"),
        Effect.catchTag("BudgetExceeded", (error) => Effect.succeed(error.message))
      )
      assert.strictEqual(
        message,
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

  it.effect("InvalidUsage names the field, what it must be, and what it got: a number, undefined, null", () =>
    Effect.gen(function*() {
      const budget = yield* Budget.make({ name: "evals" })
      const negative = yield* Effect.flip(budget.record({ tokens: -3 }))
      assert.strictEqual(negative.message, "Invalid usage.tokens: must be a whole number from 0 to 9007199254740991, got -3")
      const missing = yield* Effect.flip(budget.record(undefined as unknown as { tokens: number }))
      assert.strictEqual(missing.message, "Invalid usage: expected an object like { tokens, usd }, got undefined")
      const empty = yield* Effect.flip(budget.record({ tokens: null as unknown as number }))
      assert.strictEqual(empty.message, "Invalid usage.tokens: must be a whole number from 0 to 9007199254740991, got null")
      const cap = yield* Effect.flip(budget.child("agent", { tokenCap: null as unknown as number }))
      assert.strictEqual(
        cap.message,
        "Invalid tokenCap: must be a whole number from 0 to 9007199254740991, or left out for no cap, got null"
      )
    }))

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

  it.effect("BudgetUnavailable names what the driver said, even a refused connection's errors, and what to do", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        // A refused connection to a host of several addresses: an
        // AggregateError with no message of its own.
        const refused = new AggregateError([
          Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:6391"), { code: "ECONNREFUSED" }),
          Object.assign(new Error("connect ECONNREFUSED ::1:6391"), { code: "ECONNREFUSED" })
        ], "")
        const failing = Effect.fail(new Redis.RedisError({ cause: refused }))
        const down: Redis.Redis["Service"] = {
          send: () => failing,
          eval: () => () => failing,
          subscribe: () => Effect.never,
          reserve: failing
        }
        const error = yield* Effect.flip(RedisBudget.make({ name: "shared" }).pipe(Effect.provideService(Redis.Redis, down)))
        assert.strictEqual(error._tag, "BudgetUnavailable")
        assert.strictEqual(
          error.message,
          `Budget "shared" is unavailable: connect ECONNREFUSED 127.0.0.1:6391; connect ECONNREFUSED ::1:6391. ` +
            `Check that its store (Redis) is up and reachable; BudgetUnavailable's documentation says what a retry charges`
        )
      })
    ))

  it("a sink's error says what the server said, and a cause with no prototype does not throw", () => {
    const server = Object.assign(new Error("invalid byte sequence for encoding \"UTF8\": 0x00"), { code: "22021" })
    const failed = new Error("PgConnection: Query failed", { cause: server })
    assert.strictEqual(
      new LedgerUnavailable({ sink: "postgresql:budget_ledger", cause: failed }).message,
      "Ledger sink \"postgresql:budget_ledger\" did not take a batch: PgConnection: Query failed: invalid byte sequence " +
        "for encoding \"UTF8\": 0x00. Its entries wait in the outbox and are written when it answers"
    )
    const bare = Object.assign(Object.create(null), { reason: "down" })
    assert.include(new LedgerUnavailable({ sink: "s", cause: bare }).message, "{\"reason\":\"down\"}")
  })
})
