import { assert, describe, it } from "@effect/vitest"
import { Prompt } from "effect/ai"
import { TokenEstimate } from "../src/index.ts"

describe("TokenEstimate.estimateInputTokens", () => {
  it("counts a token per charsPerToken characters, rounded up, and tokensPerMessage a message", () => {
    assert.strictEqual(TokenEstimate.charsPerToken, 4)
    assert.strictEqual(TokenEstimate.tokensPerMessage, 4)
    // ⌈11 / 4⌉ + 4
    assert.strictEqual(TokenEstimate.estimateInputTokens(Prompt.make("hello world")), 7)
    // ⌈(40 + 81) / 4⌉ + 2 messages × 4
    const long = Prompt.make([
      { role: "system", content: "x".repeat(40) },
      { role: "user", content: [{ type: "text", text: "y".repeat(81) }] }
    ])
    assert.strictEqual(TokenEstimate.estimateInputTokens(long), 39)
  })

  it("counts tool calls by name and JSON arguments, and tool results as JSON", () => {
    const prompt = Prompt.make([
      {
        role: "assistant",
        content: [{ type: "tool-call", id: "1", name: "search", params: { q: "budget" }, providerExecuted: false }]
      },
      {
        role: "tool",
        content: [{ type: "tool-result", id: "1", name: "search", isFailure: false, result: ["a", "b"] }]
      }
    ])
    // "search" 6 + {"q":"budget"} 14, then ["a","b"] 9: ⌈29 / 4⌉ + 2 messages × 4
    assert.strictEqual(TokenEstimate.estimateInputTokens(prompt), 16)
  })

  it("holds defaultMaxOutputTokens of output when nothing sets a limit", () => {
    assert.strictEqual(TokenEstimate.defaultMaxOutputTokens, 4096)
  })
})
