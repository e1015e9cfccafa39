/**
 * Property tests over random interleavings of record, reserve, commit,
 * release, interrupt and reset, run against any store.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber } from "effect"
import fc from "fast-check"
import type { Reservation, Settlement } from "../src/index.ts"
import { usdFromNanos, usdToNanos } from "../src/index.ts"
import type { StoreUnderTest } from "./contract.ts"
import { Model, type ModelHold } from "./model.ts"

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

/** A reservation in flight: the fiber that holds its scope, and the model's view of it. */
interface Live {
  readonly hold: ModelHold
  readonly fiber: Fiber.Fiber<void, unknown>
  readonly granted: Deferred.Deferred<Reservation>
  readonly done: Deferred.Deferred<void>
  settlement: Settlement | undefined
}

// Waiters hand over through the scheduler, one turn each.
const quiesce = Effect.gen(function*() {
  for (let i = 0; i < 200; i++) yield* Effect.yieldNow
})

export const properties = (store: StoreUnderTest, numRuns = 150) =>
  describe(`properties on ${store.name}`, () => {
    it.effect("every step matches the model; holds never outlive their scopes; money is exact", () =>
      Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(fc.array(command, { maxLength: 40 }), (commands) =>
            Effect.runPromise(Effect.scoped(Effect.gen(function*() {
              const budget = yield* store.make({ name: "prop", tokenCap, usdCap: usdFromNanos(nanoCap) })
              const model = new Model(tokenCap, nanoCap)
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
                    if (live.settlement !== undefined) {
                      assert.deepStrictEqual(settlement, live.settlement, "a commit after settling returns the first")
                      break
                    }
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
                assert.isAtMost(snap.tokensUsed + snap.tokensReserved, tokenCap + model.tokensOverage)
                assert.isAtMost(usdToNanos(snap.usdUsed) + usdToNanos(snap.usdReserved), nanoCap + model.nanosOverage)
              }

              yield* Fiber.interruptAll(lives.map((live) => live.fiber))
              const snap = yield* budget.snapshot
              assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved], [0, 0], "nothing held at quiescence")
            })))
          ),
          { numRuns }
        )
      ))

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
