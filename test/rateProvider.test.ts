/**
 * A simulated provider with rate limits of its own (issue #16): it keeps a
 * token bucket of tokens per minute and one of requests per minute on
 * `Clock`, and answers 429 to a call either bucket cannot take. 1,000 calls
 * of seeded random sizes through a budget with the same rate, waiting, get
 * no 429 and finish within 10% of the least time the limits allow for
 * them; a provider a hair stricter than the budget gets 429s through it
 * (so the check can fail), and so do the same calls fired without the
 * budget. `TestClock`
 * drives the time, so minutes pass in milliseconds and every run is the
 * same.
 */
import { assert, describe, it } from "@effect/vitest"
import { Clock, Data, Effect, Fiber } from "effect"
import { TestClock } from "effect/testing"
import { Budget } from "../src/index.ts"
import type { BudgetService } from "../src/index.ts"

const minute = 60_000

/**
 * The provider's limits; the budget is given the same as its rate. With the
 * workload below, each is what holds calls back at times: a provider about
 * 1% stricter on either axis answers 429s through the budget.
 */
const limits = { tokens: 100_000, requests: 80 }
/** How long the provider takes to answer an admitted call. */
const latencyMillis = 2_000
const calls = 1_000

class TooManyRequests extends Data.TaggedError("TooManyRequests")<{ readonly axis: "tokens" | "requests" }> {}

/** One LLM call: what it will use, and the estimate reserved for it (never less). */
interface Call {
  readonly tokens: number
  readonly estimate: number
}

/** A seeded generator (mulberry32): the same calls on every run. */
const seeded = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
}

/**
 * 1,000 calls, most small (100 to 700 tokens: stretches of them meet the
 * request limit), one in seven or so large (3,000 to 8,000: they meet the
 * token limit); each estimated up to half again what it uses.
 */
const workload = (seed: number): ReadonlyArray<Call> => {
  const random = seeded(seed)
  return Array.from({ length: calls }, () => {
    const tokens = random() < 0.15 ? 3_000 + Math.floor(random() * 5_001) : 100 + Math.floor(random() * 601)
    return { tokens, estimate: tokens + Math.floor(random() * tokens / 2) }
  })
}

/**
 * The provider: a bucket per limit, full at first, refilled continuously on
 * `Clock`. Levels are kept times the period's milliseconds, so every level
 * is a whole number and the provider's arithmetic is exact: a 429 is never
 * a rounding error. It counts what a call uses when the call arrives.
 */
const makeProvider = (tokensPerMinute: number, requestsPerMinute: number) =>
  Effect.gen(function*() {
    const start = yield* Clock.currentTimeMillis
    const bucket = (perMinute: number) => ({ perMinute, level: perMinute * minute, at: start })
    const tokens = bucket(tokensPerMinute)
    const requests = bucket(requestsPerMinute)
    const refill = (b: typeof tokens, now: number) => {
      b.level = Math.min(b.perMinute * minute, b.level + (now - b.at) * b.perMinute)
      b.at = now
    }
    const counts = { admitted: 0, tooMany: 0, lastAdmittedAt: start }
    const call = (used: number): Effect.Effect<number, TooManyRequests> =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        refill(tokens, now)
        refill(requests, now)
        const short = requests.level < minute ? "requests" : tokens.level < used * minute ? "tokens" : undefined
        if (short !== undefined) {
          counts.tooMany++
          return Effect.fail(new TooManyRequests({ axis: short }))
        }
        requests.level -= minute
        tokens.level -= used * minute
        counts.admitted++
        counts.lastAdmittedAt = now
        return Effect.as(Effect.sleep(latencyMillis), used)
      })
    return { call, counts }
  })

/**
 * The least time each limit allows for `work` to reach the provider: what
 * it uses beyond the full bucket, at the limit's rate.
 */
const leastMillis = (work: ReadonlyArray<Call>) => {
  const tokens = work.reduce((sum, c) => sum + c.tokens, 0)
  return {
    tokens: Math.max(0, tokens - limits.tokens) / limits.tokens * minute,
    requests: Math.max(0, work.length - limits.requests) / limits.requests * minute
  }
}

/**
 * Forks every call, then moves the `TestClock` a second at a time until
 * all are done (each step wakes the timers due in it in order of their
 * instants), at most `maxMillis`. Returns each call's outcome.
 */
const runAll = <E>(fibers: ReadonlyArray<Fiber.Fiber<void, E>>, maxMillis: number) =>
  Effect.gen(function*() {
    for (let waited = 0; waited <= maxMillis && fibers.some((f) => f.pollUnsafe() === undefined); waited += 1_000) {
      yield* TestClock.adjust("1 second")
    }
    assert.isTrue(fibers.every((f) => f.pollUnsafe() !== undefined), `all calls done within ${maxMillis} ms`)
    return yield* Effect.forEach(fibers, (f) => Effect.result(Fiber.join(f)))
  })

type Provider = Effect.Success<ReturnType<typeof makeProvider>>

/** A call through `budget`: reserve the estimate, waiting; call; commit what it used. */
const throughBudget = (budget: BudgetService, provider: Provider, c: Call) =>
  budget.withReservation(
    { tokens: c.estimate },
    (hold) => Effect.flatMap(provider.call(c.tokens), (used) => Effect.asVoid(hold.commit({ tokens: used }))),
    { onExceeded: "wait" }
  )

/** Every call of `work` through a budget with the rate of `limits`, to a provider with `provided` limits. */
const viaBudget = (work: ReadonlyArray<Call>, provided: typeof limits, maxMillis: number) =>
  Effect.gen(function*() {
    const provider = yield* makeProvider(provided.tokens, provided.requests)
    const budget = yield* Budget.make({
      name: "provider",
      rate: { tokens: limits.tokens, requests: limits.requests, per: "1 minute" }
    })
    const fibers = yield* Effect.forEach(work, (c) => Effect.forkChild(throughBudget(budget, provider, c)))
    const outcomes = yield* runAll(fibers, maxMillis)
    return { provider, budget, outcomes, finished: yield* Clock.currentTimeMillis }
  })

const totalTokens = (work: ReadonlyArray<Call>) => work.reduce((sum, c) => sum + c.tokens, 0)

describe("a provider that answers 429 beyond its rate limits", () => {
  const work = workload(16)
  const each = leastMillis(work)
  const least = Math.max(each.tokens, each.requests)

  it("the workload meets both limits: each allows about the same time", () => {
    assert.approximately(each.tokens / each.requests, 1, 0.05, JSON.stringify(each))
  })

  it.effect("1,000 calls through a budget of the same rate, waiting: no 429, within 10% of the least time", () =>
    Effect.gen(function*() {
      const { budget, finished, outcomes, provider } = yield* viaBudget(work, limits, 2 * least)
      assert.strictEqual(provider.counts.tooMany, 0, "no 429")
      assert.strictEqual(outcomes.filter((o) => o._tag === "Success").length, calls)
      assert.strictEqual(provider.counts.admitted, calls)
      // Never faster than the limits allow (the provider would have said 429),
      // and not much slower: the last call arrives within 10% of the least
      // time, and is answered a step of the clock after its latency.
      assert.isAtLeast(provider.counts.lastAdmittedAt, least)
      assert.isAtMost(provider.counts.lastAdmittedAt, 1.1 * least)
      assert.isAtMost(finished, provider.counts.lastAdmittedAt + latencyMillis + 1_000)
      const snapshot = yield* budget.snapshot
      assert.strictEqual(snapshot.tokensUsed, totalTokens(work), "every call charged what it used")
      assert.strictEqual(snapshot.tokensReserved, 0)
    }))

  // The check above can fail: a provider a hair stricter than the budget on
  // either axis (99,000 tokens or 79 requests a minute) sees calls it must
  // refuse, and the count shows them.
  for (const axis of ["tokens", "requests"] as const) {
    it.effect(`a provider about 1% stricter on ${axis} than the budget's rate answers 429s through it`, () =>
      Effect.gen(function*() {
        const stricter = { ...limits, [axis]: Math.floor(limits[axis] * 0.99) }
        const { outcomes, provider } = yield* viaBudget(work, stricter, 2 * least)
        assert.isAbove(provider.counts.tooMany, 0)
        assert.strictEqual(outcomes.filter((o) => o._tag === "Failure").length, provider.counts.tooMany)
      }))
  }

  it.effect("the same calls fired without the budget get 429s", () =>
    Effect.gen(function*() {
      const provider = yield* makeProvider(limits.tokens, limits.requests)
      const fibers = yield* Effect.forEach(work, (c) => Effect.forkChild(Effect.asVoid(provider.call(c.tokens))))
      const outcomes = yield* runAll(fibers, 10_000)
      assert.isAbove(provider.counts.tooMany, 0)
      assert.strictEqual(outcomes.filter((o) => o._tag === "Failure").length, provider.counts.tooMany)
      assert.strictEqual(provider.counts.admitted + provider.counts.tooMany, calls)
    }))
})
