/**
 * Property tests over random interleavings of record, reserve, commit,
 * release, interrupt and reset, run against any store.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, identity } from "effect"
import { TestClock } from "effect/testing"
import fc from "fast-check"
import type { Reservation, Settlement } from "../../Budget.ts"
import type { PropertyOptions, StoreUnderTest } from "../../BudgetStoreContract.ts"
import { usdFromNanos, usdToNanos } from "../../Usage.ts"
import { capturingLogs } from "./logs.ts"
import { Model, type ModelHold, type ModelLimits } from "./model.ts"

const tokenCap = 100
const nanoCap = 1_000_000_000

const tokens = fc.integer({ min: 0, max: 60 })
const nanos = fc.integer({ min: 0, max: 600_000_000 })
const pick = fc.nat()

type Command =
  | { readonly op: "record"; readonly tokens: number; readonly nanos: number }
  | { readonly op: "reserve"; readonly tokens: number; readonly nanos: number; readonly wait: boolean }
  | { readonly op: "commit"; readonly pick: number; readonly tokens?: number | undefined; readonly nanos?: number | undefined }
  | { readonly op: "release" | "close" | "interrupt"; readonly pick: number }
  | { readonly op: "reset" }
  | { readonly op: "advance"; readonly millis: number }
  | { readonly op: "advanceToInstant" }

const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ op: fc.constant("record" as const), tokens, nanos }),
  fc.record({ op: fc.constant("reserve" as const), tokens, nanos, wait: fc.boolean() }),
  fc.record({ op: fc.constant("reserve" as const), tokens, nanos, wait: fc.boolean() }),
  fc.record({
    op: fc.constant("commit" as const),
    pick,
    tokens: fc.option(fc.integer({ min: 0, max: 90 }), { nil: undefined }),
    nanos: fc.option(fc.integer({ min: 0, max: 900_000_000 }), { nil: undefined })
  }),
  fc.record({ op: fc.constantFrom("release" as const, "close" as const, "interrupt" as const), pick }),
  fc.constant({ op: "reset" as const })
)

// A rate whose refill each millisecond is an exact binary fraction (1/8
// token, 1/128 request), so the store and the model agree to the bit.
const timedLimits: ModelLimits = { tokens: 128, requests: 8, periodMillis: 1024, maxConcurrent: 3 }
// On a clock no test moves: the same buckets refilled over 2^40 ms (35
// years), so a run gives back less than a token by time, and the model,
// whose time stands still, counts a bucket's whole tokens exactly.
const frozenLimits: ModelLimits = { ...timedLimits, periodMillis: 2 ** 40 }

// Time passes in short steps, so the buckets run low and waiters line up.
const limitedCommand: fc.Arbitrary<Command> = fc.oneof(
  { arbitrary: command, weight: 5 },
  { arbitrary: fc.record({ op: fc.constant("advance" as const), millis: fc.integer({ min: 0, max: 400 }) }), weight: 1 },
  // to the very instant the head of the line is let in, if the rate holds it back
  { arbitrary: fc.constant({ op: "advanceToInstant" as const }), weight: 1 }
)

/** A reservation in flight: the fiber that holds its scope, and the model's view of it. */
interface Live {
  readonly hold: ModelHold
  readonly fiber: Fiber.Fiber<void, unknown>
  readonly granted: Deferred.Deferred<Reservation>
  readonly done: Deferred.Deferred<void>
  settlement: Settlement | undefined
}

// A commit after a release logs a warning, as it should: kept, not printed.
// Any other warning or error fails the run.
const lateCommitsLogged = <A, E, R>(program: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  capturingLogs((lines) =>
    Effect.tap(program, () =>
      Effect.sync(() => {
        const unexpected = lines.filter((line) =>
          (line.level === "Warn" || line.level === "Error") && !line.text.includes("a commit after its hold was released")
        )
        assert.deepStrictEqual(unexpected, [], "no other warning or error")
      }))
  )

// Waiters hand over through the scheduler, one turn each.
const turns = Effect.gen(function*() {
  for (let i = 0; i < 200; i++) yield* Effect.yieldNow
})

export const properties = (store: StoreUnderTest, options: PropertyOptions = {}) =>
  describe(`properties on ${store.name}`, () => {
    const numRuns = options.numRuns ?? 150
    const quiesce = Effect.andThen(turns, store.settle ?? Effect.void)
    const modelTest = (clock: PropertyOptions["limits"]) => {
      const limited = clock !== undefined
      const limits = clock === "TestClock" ? timedLimits : frozenLimits
      const commands = clock === "TestClock" ? limitedCommand : command
      // Whole tokens and requests: what time gave back on the store's own clock is less than one.
      const whole = (level: number | undefined) =>
        clock === "store clock" && level !== undefined ? Math.floor(level) : level
      return Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.array(commands, { minLength: limited ? 10 : 0, maxLength: 40 }), (commands) =>
            Effect.runPromise(Effect.scoped(Effect.gen(function*() {
              const budget = yield* store.make({
                name: "prop",
                tokenCap,
                usdCap: usdFromNanos(nanoCap),
                ...(limited
                  ? {
                    rate: { tokens: limits.tokens, requests: limits.requests, per: limits.periodMillis },
                    maxConcurrent: limits.maxConcurrent
                  }
                  : {})
              })
              const model = new Model(tokenCap, nanoCap, limited ? limits : undefined)
              const lives: Array<Live> = []
              const choose = (n: number, states: ReadonlyArray<ModelHold["state"]>) => {
                const candidates = lives.filter((live) => states.includes(live.hold.state))
                return candidates.length === 0 ? undefined : candidates[n % candidates.length]
              }
              const end = (live: Live) => lives.splice(lives.indexOf(live), 1)

              for (const c of commands) {
                switch (c.op) {
                  case "record": {
                    const exit = yield* Effect.exit(budget.record({ tokens: c.tokens, usd: usdFromNanos(c.nanos) }))
                    assert.strictEqual(Exit.isSuccess(exit), model.record(c.tokens, c.nanos), "record outcome")
                    break
                  }
                  case "reserve": {
                    const hold = model.reserve(c.tokens, c.nanos, c.wait)
                    const granted = yield* Deferred.make<Reservation>()
                    const done = yield* Deferred.make<void>()
                    const fiber = yield* Effect.forkDetach(Effect.scoped(Effect.gen(function*() {
                      const r = yield* budget.reserve(
                        { tokens: c.tokens, usd: usdFromNanos(c.nanos) },
                        { onExceeded: c.wait ? "wait" : "fail" }
                      )
                      yield* Deferred.succeed(granted, r)
                      yield* Deferred.await(done)
                    })))
                    yield* quiesce
                    if (hold === undefined) {
                      const exit = fiber.pollUnsafe()
                      assert.isTrue(exit !== undefined && Exit.isFailure(exit), "refused as the model refuses")
                    } else {
                      lives.push({ hold, fiber, granted, done, settlement: undefined })
                    }
                    break
                  }
                  case "commit": {
                    const live = choose(c.pick, ["held", "settled"])
                    if (live === undefined) break
                    const r = yield* Deferred.await(live.granted)
                    const actualTokens = c.tokens ?? live.hold.tokens
                    const actualNanos = c.nanos ?? live.hold.nanos
                    const settlement = yield* r.commit({
                      tokens: c.tokens,
                      usd: c.nanos === undefined ? undefined : usdFromNanos(c.nanos)
                    })
                    if (live.settlement?._tag === "Committed") {
                      assert.deepStrictEqual(settlement, live.settlement, "a commit after a commit returns the first")
                      break
                    }
                    // after a release too: the usage happened, so it is charged
                    const expected = model.commit(live.hold, actualTokens, actualNanos)
                    assert.deepStrictEqual(
                      [settlement.tokens, usdToNanos(settlement.usd), settlement.tokensOverage, usdToNanos(settlement.usdOverage)],
                      [actualTokens, actualNanos, expected.tokensOverage, expected.nanosOverage],
                      "settlement"
                    )
                    live.settlement = settlement
                    break
                  }
                  case "release": {
                    const live = choose(c.pick, ["held", "settled"])
                    if (live === undefined) break
                    const r = yield* Deferred.await(live.granted)
                    const settlement = yield* r.release
                    if (live.settlement !== undefined) {
                      assert.deepStrictEqual(settlement, live.settlement, "a release after settling returns the first")
                      break
                    }
                    assert.strictEqual(settlement._tag, "Released")
                    model.release(live.hold)
                    live.settlement = settlement
                    break
                  }
                  case "close": {
                    const live = choose(c.pick, ["held", "settled"])
                    if (live === undefined) break
                    yield* Deferred.succeed(live.done, undefined)
                    yield* Fiber.await(live.fiber)
                    model.release(live.hold)
                    end(live)
                    break
                  }
                  case "interrupt": {
                    const live = choose(c.pick, ["waiting", "held", "settled"])
                    if (live === undefined) break
                    yield* Fiber.interrupt(live.fiber)
                    model.release(live.hold)
                    end(live)
                    break
                  }
                  case "reset": {
                    yield* budget.reset
                    model.reset()
                    break
                  }
                  case "advance":
                  case "advanceToInstant": {
                    const millis = c.op === "advance" ? c.millis : model.headWait()
                    if (millis === Infinity) break
                    yield* TestClock.adjust(millis)
                    model.advance(millis)
                    break
                  }
                }
                yield* quiesce
                for (const live of lives) {
                  assert.strictEqual(
                    Deferred.isDoneUnsafe(live.granted),
                    live.hold.state !== "waiting",
                    "granted exactly when the model grants"
                  )
                }
                const snap = yield* budget.snapshot
                assert.deepStrictEqual(
                  [snap.tokensUsed, usdToNanos(snap.usdUsed), snap.tokensReserved, usdToNanos(snap.usdReserved)],
                  [model.tokensUsed, model.nanosUsed, model.tokensReserved, model.nanosReserved],
                  `after ${c.op}`
                )
                if (limited) {
                  assert.deepStrictEqual(
                    [snap.inFlight, whole(snap.rates[0]?.available), whole(snap.rates[1]?.available)],
                    [model.inFlight, model.tokenLevel, model.requestLevel],
                    `in flight and the rate after ${c.op}`
                  )
                }
                assert.isAtMost(snap.tokensUsed + snap.tokensReserved, tokenCap + model.tokensOverage)
                assert.isAtMost(usdToNanos(snap.usdUsed) + usdToNanos(snap.usdReserved), nanoCap + model.nanosOverage)
              }

              yield* Fiber.interruptAll(lives.map((live) => live.fiber))
              const snap = yield* budget.snapshot
              assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved], [0, 0], "nothing held at quiescence")
              if (limited) assert.strictEqual(snap.inFlight, 0, "nothing in flight at quiescence")
            }).pipe(lateCommitsLogged, clock === "TestClock" ? Effect.provide(TestClock.layer()) : identity)))
          ),
          { numRuns }
        )
      )
    }
    it.effect("every step matches the model; holds never outlive their scopes; money is exact", () => modelTest(undefined))
    if (options.limits !== undefined) {
      it.effect(`with a rate and a most in flight, on ${options.limits}: every step matches the model`, () =>
        modelTest(options.limits))
    }

    it.effect("many fibers at once: no overshoot at any moment, nothing held at the end, exact sums", () =>
      Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            fc.array(
              fc.record({
                ops: fc.array(
                  fc.record({
                    kind: fc.constantFrom("record", "commit", "release", "fail", "hang"),
                    tokens,
                    nanos,
                    actualTokens: fc.integer({ min: 0, max: 90 }),
                    actualNanos: fc.integer({ min: 0, max: 900_000_000 }),
                    wait: fc.boolean(),
                    turns: fc.integer({ min: 0, max: 5 })
                  }),
                  { maxLength: 8 }
                ),
                interruptAfter: fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined })
              }),
              { minLength: 1, maxLength: 60 }
            ),
            (workers) =>
              Effect.runPromise(Effect.scoped(Effect.gen(function*() {
                const budget = yield* store.make({ name: "chaos", tokenCap, usdCap: usdFromNanos(nanoCap) })
                // Charged amounts, counted in the same uninterruptible step as the
                // charge; `pending` covers commits in flight, whose overage is not
                // reported yet.
                const sums = { tokens: 0, nanos: 0, tokensOver: 0, nanosOver: 0, pendingTokens: 0, pendingNanos: 0 }
                let violation: string | undefined
                const check = Effect.flatMap(budget.snapshot, (snap) =>
                  Effect.sync(() => {
                    if (snap.tokensUsed + snap.tokensReserved > tokenCap + sums.tokensOver + sums.pendingTokens) {
                      violation ??= `tokens ${snap.tokensUsed} + ${snap.tokensReserved} past the cap`
                    }
                    if (
                      usdToNanos(snap.usdUsed) + usdToNanos(snap.usdReserved) >
                        nanoCap + sums.nanosOver + sums.pendingNanos
                    ) violation ??= `usd ${snap.usdUsed} + ${snap.usdReserved} past the cap`
                  })
                )
                const turns = (n: number) => Effect.repeat(Effect.yieldNow, { times: n })
                const runOp = (op: (typeof workers)[number]["ops"][number]) => {
                  const usage = { tokens: op.tokens, usd: usdFromNanos(op.nanos) }
                  if (op.kind === "record") {
                    return Effect.uninterruptible(Effect.tap(budget.record(usage), () =>
                      Effect.sync(() => {
                        sums.tokens += op.tokens
                        sums.nanos += op.nanos
                      })))
                  }
                  return Effect.scoped(Effect.gen(function*() {
                    const r = yield* budget.reserve(usage, { onExceeded: op.wait ? "wait" : "fail" })
                    yield* check
                    yield* turns(op.turns)
                    if (op.kind === "commit") {
                      const potentialTokens = Math.max(0, op.actualTokens - op.tokens)
                      const potentialNanos = Math.max(0, op.actualNanos - op.nanos)
                      yield* Effect.uninterruptible(Effect.gen(function*() {
                        sums.pendingTokens += potentialTokens
                        sums.pendingNanos += potentialNanos
                        const s = yield* r.commit({ tokens: op.actualTokens, usd: usdFromNanos(op.actualNanos) })
                        sums.pendingTokens -= potentialTokens
                        sums.pendingNanos -= potentialNanos
                        sums.tokens += s.tokens
                        sums.nanos += usdToNanos(s.usd)
                        sums.tokensOver += s.tokensOverage
                        sums.nanosOver += usdToNanos(s.usdOverage)
                      }))
                    } else if (op.kind === "release") {
                      yield* r.release
                    } else if (op.kind === "fail") {
                      return yield* Effect.fail("the call failed")
                    } else {
                      return yield* Effect.never
                    }
                  }))
                }
                const fibers = yield* Effect.forEach(workers, (worker) =>
                  Effect.forkDetach(Effect.forEach(worker.ops, (op) =>
                    Effect.exit(runOp(op)).pipe(Effect.andThen(check)), { discard: true })))
                // Interrupt some workers part-way, wherever they are.
                yield* Effect.forEach(workers, (worker, i) =>
                  worker.interruptAfter === undefined
                    ? Effect.void
                    : Effect.forkDetach(Effect.andThen(turns(worker.interruptAfter), Fiber.interrupt(fibers[i]!))))
                // A worker left hanging, or waiting for room that never comes, ends here.
                yield* quiesce
                yield* check
                yield* Fiber.interruptAll(fibers)
                assert.isUndefined(violation)
                const snap = yield* budget.snapshot
                assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved], [0, 0], "nothing held at quiescence")
                assert.deepStrictEqual([snap.tokensUsed, usdToNanos(snap.usdUsed)], [sums.tokens, sums.nanos], "exact sums")
              })))
          ),
          { numRuns: Math.max(20, Math.floor(numRuns / 3)) }
        )
      ))
  })

type TreeCommand =
  | { readonly op: "record"; readonly node: number; readonly tokens: number }
  | { readonly op: "reserve"; readonly node: number; readonly tokens: number; readonly wait: boolean }
  | { readonly op: "commit"; readonly pick: number; readonly tokens: number }
  | { readonly op: "release" | "interrupt"; readonly pick: number }
  | { readonly op: "reset"; readonly node: number }

const treeCommand: fc.Arbitrary<TreeCommand> = fc.oneof(
  fc.record({ op: fc.constant("record" as const), node: fc.nat(3), tokens: fc.integer({ min: 0, max: 40 }) }),
  fc.record({ op: fc.constant("reserve" as const), node: fc.nat(3), tokens: fc.integer({ min: 0, max: 40 }), wait: fc.boolean() }),
  fc.record({ op: fc.constant("reserve" as const), node: fc.nat(3), tokens: fc.integer({ min: 0, max: 40 }), wait: fc.boolean() }),
  fc.record({ op: fc.constant("commit" as const), pick, tokens: fc.integer({ min: 0, max: 60 }) }),
  fc.record({ op: fc.constantFrom("release" as const, "interrupt" as const), pick }),
  fc.record({ op: fc.constant("reset" as const), node: fc.nat(3) })
)

/**
 * A tree of four budgets with caps at three levels: every charge must count
 * at each level of its chain, every level stay within its cap (plus reported
 * overage), and no waiter be forgotten.
 */
export const treeProperties = (store: StoreUnderTest, options: PropertyOptions = {}) =>
  describe(`tree properties on ${store.name}`, () => {
    const numRuns = options.numRuns ?? 100
    const quiesce = Effect.andThen(turns, store.settle ?? Effect.void)
    it.effect("every level counts exactly, stays within its cap, and no waiter is forgotten", () =>
      Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.array(treeCommand, { maxLength: 40 }), (commands) =>
            Effect.runPromise(Effect.scoped(Effect.gen(function*() {
              const org = yield* store.make({ name: "org", tokenCap: 100 })
              const a = yield* org.child("a", { tokenCap: 60 })
              const b = yield* org.child("b")
              const x = yield* a.child("x", { tokenCap: 30 })
              const budgets = [org, a, b, x]
              const caps = [100, 60, Infinity, 30]
              const chains = [[0], [1, 0], [2, 0], [3, 1, 0]]
              const used = [0, 0, 0, 0]
              const resets = [0, 0, 0, 0]
              const overage = [0, 0, 0, 0]
              interface Hold {
                readonly node: number
                readonly tokens: number
                readonly fiber: Fiber.Fiber<void, unknown>
                readonly granted: Deferred.Deferred<Reservation>
                /** Reset counts of its chain when granted; undefined while waiting. */
                at: ReadonlyArray<number> | undefined
                settled: boolean
              }
              const holds: Array<Hold> = []
              const reservedAt = (n: number) =>
                holds.reduce((sum, h) =>
                  h.at !== undefined && !h.settled && chains[h.node]!.includes(n) &&
                    h.at[chains[h.node]!.indexOf(n)] === resets[n]
                    ? sum + h.tokens
                    : sum, 0)
              const check = (label: string) =>
                Effect.gen(function*() {
                  yield* quiesce
                  for (const h of holds) {
                    if (h.at === undefined && Deferred.isDoneUnsafe(h.granted)) h.at = chains[h.node]!.map((n) => resets[n]!)
                  }
                  const taken: Array<number> = []
                  for (let n = 0; n < 4; n++) {
                    const snap = yield* budgets[n]!.snapshot
                    assert.strictEqual(snap.tokensUsed, used[n], `${label}: used at ${budgets[n]!.path}`)
                    assert.strictEqual(snap.tokensReserved, reservedAt(n), `${label}: reserved at ${budgets[n]!.path}`)
                    assert.isAtMost(snap.tokensUsed + snap.tokensReserved, caps[n]! + overage[n]!, `${label}: cap at ${budgets[n]!.path}`)
                    taken.push(snap.tokensUsed + snap.tokensReserved)
                  }
                  // A waiter still waiting must have a reason: a level it does not
                  // fit, or an earlier waiter on a level it shares.
                  const waiting = holds.filter((h) => h.at === undefined && h.fiber.pollUnsafe() === undefined)
                  waiting.forEach((h, i) => {
                    const chain = chains[h.node]!
                    const blocked = chain.some((n) => taken[n]! + h.tokens > caps[n]!) ||
                      waiting.slice(0, i).some((earlier) => chains[earlier.node]!.some((n) => chain.includes(n)))
                    assert.isTrue(blocked, `${label}: a waiter on ${budgets[h.node]!.path} was forgotten`)
                  })
                })
              const live = (n: number, granted: boolean) => {
                const candidates = holds.filter((h) => (h.at !== undefined) === granted && !h.settled)
                return candidates.length === 0 ? undefined : candidates[n % candidates.length]
              }

              for (const c of commands) {
                switch (c.op) {
                  case "record": {
                    const exit = yield* Effect.exit(budgets[c.node]!.record({ tokens: c.tokens }))
                    if (Exit.isSuccess(exit)) for (const n of chains[c.node]!) used[n]! += c.tokens
                    break
                  }
                  case "reserve": {
                    const granted = yield* Deferred.make<Reservation>()
                    const fiber = yield* Effect.forkDetach(Effect.scoped(Effect.gen(function*() {
                      const r = yield* budgets[c.node]!.reserve({ tokens: c.tokens }, { onExceeded: c.wait ? "wait" : "fail" })
                      yield* Deferred.succeed(granted, r)
                      yield* Effect.never
                    })))
                    holds.push({ node: c.node, tokens: c.tokens, fiber, granted, at: undefined, settled: false })
                    break
                  }
                  case "commit": {
                    const h = live(c.pick, true)
                    if (h === undefined) break
                    const r = yield* Deferred.await(h.granted)
                    const s = yield* r.commit({ tokens: c.tokens })
                    h.settled = true
                    for (const n of chains[h.node]!) {
                      used[n]! += c.tokens
                      overage[n]! += s.tokensOverage
                    }
                    break
                  }
                  case "release": {
                    const h = live(c.pick, true)
                    if (h === undefined) break
                    yield* Effect.flatMap(Deferred.await(h.granted), (r) => r.release)
                    h.settled = true
                    break
                  }
                  case "interrupt": {
                    const h = live(c.pick, c.pick % 2 === 0)
                    if (h === undefined) break
                    yield* Fiber.interrupt(h.fiber)
                    h.settled = true
                    break
                  }
                  case "reset": {
                    yield* budgets[c.node]!.reset
                    used[c.node] = 0
                    overage[c.node] = 0
                    resets[c.node]!++
                    break
                  }
                }
                yield* check(c.op)
              }

              // Free everything: every waiter that fits the caps must then get its hold.
              for (const h of holds) if (h.at !== undefined) yield* Fiber.interrupt(h.fiber)
              for (const h of holds) if (h.at !== undefined) h.settled = true
              const waiting = holds.filter((h) => h.at === undefined && h.fiber.pollUnsafe() === undefined)
              for (const h of waiting) {
                yield* Effect.forEach([0, 1, 2, 3], (n) => budgets[n]!.reset)
                yield* quiesce
                assert.isTrue(Deferred.isDoneUnsafe(h.granted), "a waiter that fits is served once room appears")
                yield* Fiber.interrupt(h.fiber)
              }
              for (const budget of budgets) {
                assert.strictEqual((yield* budget.snapshot).tokensReserved, 0, `nothing held at ${budget.path}`)
              }
            })))
          ),
          { numRuns }
        )
      ))
  })
