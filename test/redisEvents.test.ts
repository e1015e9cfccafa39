/**
 * Events that cross processes through Redis: what the scripts publish
 * decodes through Schema into `BudgetEvent`, and anything else on the
 * channel is logged and dropped, never misread.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Logger, Schema, Stream } from "effect"
import * as Redis from "effect/persistence/Redis"
import type { BudgetEvent } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { Message } from "../src/internal/redis/events.ts"
import { eventually } from "./support/poll.ts"
import { available, RedisLive, testPrefix } from "./support/redis.ts"

/**
 * Each kind of event as a script publishes it (`announce` in scripts.ts:
 * every number a string, dollars in nano-dollars), and what it reads as.
 * `exact`: encoding the event writes the same message back (an `Exceeded`
 * carries only its refusing axis, so a request on both does not).
 */
const published: ReadonlyArray<{ readonly wire: object; readonly event: BudgetEvent; readonly exact: boolean }> = [
  {
    wire: { t: "Recorded", b: "org/agent", tk: "1200", n: "3600000" },
    event: { _tag: "Recorded", budget: "org/agent", tokens: 1200, usd: 0.0036 },
    exact: true
  },
  {
    wire: { t: "Reserved", b: "org", tk: "2000", n: "0" },
    event: { _tag: "Reserved", budget: "org", tokens: 2000, usd: 0 },
    exact: true
  },
  {
    wire: { t: "Released", b: "org", tk: "0", n: "10000000000" },
    event: { _tag: "Released", budget: "org", tokens: 0, usd: 10 },
    exact: true
  },
  {
    wire: { t: "Committed", b: "org", tk: "14", n: "250000000", to: "4", no: "0", e: "0" },
    event: { _tag: "Committed", budget: "org", tokens: 14, usd: 0.25, tokensOverage: 4, usdOverage: 0, estimated: false },
    exact: true
  },
  {
    wire: { t: "Committed", b: "org", tk: "0", n: "1500000000", to: "0", no: "500000000", e: "1" },
    event: { _tag: "Committed", budget: "org", tokens: 0, usd: 1.5, tokensOverage: 0, usdOverage: 0.5, estimated: true },
    exact: true
  },
  {
    wire: { t: "Exceeded", b: "org/agent", a: "tokens", k: "90", c: "100", tk: "20", n: "0" },
    event: { _tag: "Exceeded", budget: "org/agent", limit: "cap", axis: "tokens", requested: 20, attempted: 110, cap: 100 },
    exact: true
  },
  {
    wire: { t: "Exceeded", b: "org", a: "usd", k: "9000000000", c: "10000000000", tk: "0", n: "2000000000" },
    event: { _tag: "Exceeded", budget: "org", limit: "cap", axis: "usd", requested: 2, attempted: 11, cap: 10 },
    exact: true
  },
  {
    wire: { t: "Exceeded", b: "org", a: "tokens", k: "90", c: "100", tk: "20", n: "2000000000" },
    event: { _tag: "Exceeded", budget: "org", limit: "cap", axis: "tokens", requested: 20, attempted: 110, cap: 100 },
    exact: false
  },
  {
    wire: { t: "ThresholdCrossed", b: "org", a: "tokens", th: "0.8", u: "85", c: "100" },
    event: { _tag: "ThresholdCrossed", budget: "org", axis: "tokens", threshold: 0.8, used: 85, cap: 100 },
    exact: true
  },
  {
    wire: { t: "ThresholdCrossed", b: "org", a: "usd", th: "0.5", u: "5000000000", c: "10000000000" },
    event: { _tag: "ThresholdCrossed", budget: "org", axis: "usd", threshold: 0.5, used: 5, cap: 10 },
    exact: true
  },
  {
    wire: { t: "Reset", b: "org", we: "1767225600000" },
    event: { _tag: "Reset", budget: "org", windowEndsAt: 1767225600000 },
    exact: true
  },
  {
    wire: { t: "Reset", b: "org" },
    event: { _tag: "Reset", budget: "org", windowEndsAt: undefined },
    exact: true
  },
  {
    wire: { t: "Reconfigured", b: "org/a", tc: "80", nc: "-1", ptc: "-1", pnc: "5000000000" },
    event: {
      _tag: "Reconfigured",
      budget: "org/a",
      tokenCap: 80,
      usdCap: Infinity,
      previousTokenCap: Infinity,
      previousUsdCap: 5
    },
    exact: true
  },
  {
    wire: { t: "StateLost", b: "org/a", r: "0" },
    event: { _tag: "StateLost", budget: "org/a", recreated: false },
    exact: true
  }
]

describe("the events' wire codec", () => {
  it("reads each event as a script publishes it, and writes it back", () => {
    for (const { event, exact, wire } of published) {
      const decoded = Schema.decodeUnknownSync(Message)(JSON.stringify(wire))
      assert.deepStrictEqual(decoded, event)
      const encoded = Schema.encodeSync(Message)(event)
      assert.deepStrictEqual(Schema.decodeUnknownSync(Message)(encoded), event)
      if (exact) assert.deepStrictEqual(JSON.parse(encoded), wire)
    }
  })

  it("reads integers written as numbers too", () => {
    const decoded = Schema.decodeUnknownSync(Message)(
      JSON.stringify({ t: "Committed", b: "org", tk: 14, n: 0, to: 4, no: 0, e: 1 })
    )
    assert.deepStrictEqual(decoded, {
      _tag: "Committed",
      budget: "org",
      tokens: 14,
      usd: 0,
      tokensOverage: 4,
      usdOverage: 0,
      estimated: true
    })
  })

  it("refuses what it cannot read exactly, rather than guessing", () => {
    const refused = [
      "{ not json",
      JSON.stringify({ t: "Refunded", b: "org", tk: "5", n: "0" }),
      JSON.stringify({ b: "org", tk: "5", n: "0" }),
      JSON.stringify({ t: "Recorded", b: "org", tk: "five", n: "0" }),
      JSON.stringify({ t: "Recorded", b: "org", tk: "1.5", n: "0" }),
      JSON.stringify({ t: "Recorded", b: "org", tk: "-1", n: "0" }),
      JSON.stringify({ t: "Recorded", tk: "5", n: "0" }),
      JSON.stringify({ t: "Committed", b: "org", tk: "5", n: "0" }),
      JSON.stringify({ t: "Exceeded", b: "org", a: "time", k: "1", c: "1", tk: "1", n: "0" }),
      JSON.stringify({ t: "Reset", b: "org", we: "soon" })
    ]
    for (const message of refused) {
      assert.throws(() => Schema.decodeUnknownSync(Message)(message), undefined, undefined, message)
    }
  })
})

/** A logger that keeps the warnings. */
const warningLogger = () => {
  const warnings: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    if (logLevel === "Warn") warnings.push(Array.isArray(message) ? message.join(" ") : String(message))
  })
  return { warnings, layer: Logger.layer([logger]) }
}

describe.runIf(available)("events on Redis", () => {
  it.live("a malformed message or an unknown tag is logged and dropped; a valid event still arrives", () => {
    const log = warningLogger()
    return Effect.gen(function*() {
      const prefix = testPrefix("events")
      const channel = `${prefix}{shared}:events`
      const redisLayer = yield* Layer.build(RedisLive)
      const redis = yield* Effect.provide(Redis.Redis, redisLayer)
      const budget = yield* RedisBudget.make({ name: "shared", tokenCap: 1_000 }, { prefix }).pipe(
        Effect.provide(redisLayer)
      )
      const seen: Array<BudgetEvent> = []
      yield* Effect.forkScoped(Stream.runForEach(budget.events, (e) => Effect.sync(() => seen.push(e))))
      // Listening once its registration is in Redis (it subscribes first).
      yield* eventually(
        "the stream is registered",
        Effect.map(redis.send<number>("EXISTS", `${prefix}{shared}:listeners`), (n) => n === 1)
      )
      const publish = (message: string) => redis.send("PUBLISH", channel, message)
      yield* publish(JSON.stringify({ t: "Refunded", b: "shared", tk: "5", n: "0" }))
      yield* publish("{ not json")
      yield* publish(JSON.stringify({ t: "Recorded", b: "shared", tk: "five", n: "0" }))
      yield* publish(JSON.stringify({ t: "Committed", b: "shared", tk: "5", n: "0" }))
      yield* budget.record({ tokens: 10 })
      // The record's event was published after the four on this connection:
      // once it is read, they were too.
      yield* eventually("the record's event", Effect.sync(() => seen.length > 0))
      assert.deepStrictEqual(seen, [{ _tag: "Recorded", budget: "shared", tokens: 10, usd: 0 }])
      const dropped = log.warnings.filter((line) => line.includes(channel))
      assert.strictEqual(dropped.length, 4, dropped.join("\n"))
      // what was wrong, then the message itself
      assert.include(dropped[0]!, "not a budget event (Expected an object whose t is a budget event's tag)")
      assert.include(dropped[0]!, "Refunded")
      assert.include(dropped[1]!, "(Expected a valid JSON string): { not json")
      assert.include(dropped[2]!, `(Expected an integer at ["tokens"])`)
      assert.include(dropped[3]!, `(Missing key at ["to"])`)
    }).pipe(Effect.provide(log.layer), Effect.scoped)
  }, 30_000)
})
