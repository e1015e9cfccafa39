import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Response } from "effect/ai"
import { Pricing } from "../src/index.ts"

describe("Pricing.perMillionTokens", () => {
  it.effect("prices each kind of token at its own price, exactly", () =>
    Effect.gen(function*() {
      const price = yield* Pricing.perMillionTokens({
        "m": { input: 1, cacheRead: 0.1, cacheWrite: 1.25, output: 4, reasoning: 8 }
      })
      // 1000 × $1 + 2000 × $0.1 + 400 × $1.25 + 200 × $4 + 100 × $8 per million
      const usage = new Response.Usage({
        inputTokens: { uncached: 1000, total: 3400, cacheRead: 2000, cacheWrite: 400 },
        outputTokens: { total: 300, text: 200, reasoning: 100 }
      })
      assert.strictEqual(price(usage, "m"), 0.0033)
      // Only totals: input counts as uncached, output as text.
      const totals = new Response.Usage({ inputTokens: { total: 1000 }, outputTokens: { total: 100 } })
      assert.strictEqual(price(totals, "m"), 0.0014)
    }))

  it.effect("cache reads and writes default to the input price, reasoning to the output price", () =>
    Effect.gen(function*() {
      const price = yield* Pricing.perMillionTokens({ "m": { input: 2, output: 10 } })
      const usage = new Response.Usage({
        inputTokens: { uncached: 100, cacheRead: 100, cacheWrite: 100 },
        outputTokens: { text: 10, reasoning: 10 }
      })
      assert.strictEqual(price(usage, "m"), 0.0008)
    }))

  it.effect("a model is priced by its exact name, its longest prefix, \"*\", or else the highest prices", () =>
    Effect.gen(function*() {
      const price = yield* Pricing.perMillionTokens({
        "gpt": { input: 1, output: 1 },
        "gpt-5-mini": { input: 2, output: 2 },
        "claude": { input: 10, output: 30 }
      })
      const withStar = yield* Pricing.perMillionTokens({ "gpt": { input: 1, output: 1 }, "*": { input: 5, output: 5 } })
      const u = new Response.Usage({ inputTokens: { total: 1_000_000 }, outputTokens: { total: 1_000_000 } })
      assert.deepStrictEqual(
        [price(u, "gpt-5-mini"), price(u, "gpt-5-mini-2025"), price(u, "gpt-4o"), price(u, "llama"), price(u, undefined)],
        [4, 4, 2, 40, 40]
      )
      assert.deepStrictEqual([withStar(u, "gpt-4o"), withStar(u, "llama")], [2, 10])
    }))

  it.effect("bad prices fail with InvalidUsage saying which price and why", () =>
    Effect.gen(function*() {
      const messageOf = (prices: Readonly<Record<string, Pricing.TokenPrices>>) =>
        Effect.map(Effect.flip(Pricing.perMillionTokens(prices)), (error) => {
          assert.strictEqual(error._tag, "InvalidUsage")
          return error.message
        })
      assert.deepStrictEqual([
        yield* messageOf({ "m": { input: -1, output: 2 } }),
        yield* messageOf({ "m": { input: 1, output: 2, cacheRead: Number.NaN } }),
        yield* messageOf({})
      ], [
        "Invalid prices[\"m\"].input: must be USD per million tokens, a number from 0 to 9007199, got -1",
        "Invalid prices[\"m\"].cacheRead: must be USD per million tokens, a number from 0 to 9007199, or left out, got NaN",
        "Invalid prices: must map model names (or \"*\") to prices per million tokens, like { \"*\": { input: 0.25, output: 2 } }, got {}"
      ])
    }))
})
