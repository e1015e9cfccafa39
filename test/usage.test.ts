import { assert, describe, it } from "@effect/vitest"
import fc from "fast-check"
import { maxUsd, usdFromNanos, usdToNanos } from "../src/index.ts"

describe("nano-dollar money", () => {
  it("rounds dollars to the nearest nano-dollar", () => {
    assert.strictEqual(usdToNanos(0.0036), 3_600_000)
    assert.strictEqual(usdToNanos(0.1 + 0.2), 300_000_000)
    assert.strictEqual(usdToNanos(0.0000000016), 2)
    assert.strictEqual(usdToNanos(9_000_000), 9_000_000_000_000_000)
    assert.strictEqual(usdToNanos(maxUsd), 9_007_199_000_000_000)
    assert.isAtMost(usdToNanos(maxUsd), Number.MAX_SAFE_INTEGER)
  })

  it("reads whole nano-dollars back as the decimal they are", () => {
    assert.strictEqual(usdFromNanos(9_996_400_000), 9.9964)
    assert.strictEqual(usdFromNanos(1), 0.000000001)
  })

  it("any whole nano-dollar amount up to $4,194,304 survives the round trip", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 2 ** 22 * 1e9 }), (nanos) => {
      assert.strictEqual(usdToNanos(usdFromNanos(nanos)), nanos)
    }))
  })

  it("a decimal with at most nine places survives the round trip", () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 999_999 }), fc.integer({ min: 0, max: 999_999_999 }), (whole, frac) => {
      const text = `${whole}.${String(frac).padStart(9, "0")}`
      assert.strictEqual(usdFromNanos(usdToNanos(Number(text))), Number(text))
    }))
  })
})
