/**
 * The contract every store keeps: semantics 1-8 of DESIGN.md. One function
 * over a way to make a budget, run against each store; published by
 * `effect-token-budget/testing`.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Duration, Effect, Exit, Fiber, Metric, Option, Ref, Scope, Stream } from "effect"
import { TestClock } from "effect/testing"
import type { BudgetEvent } from "../../BudgetEvent.ts"
import type { StoreUnderTest } from "../../BudgetStoreContract.ts"
import { capturingLogs, warningsOf } from "./logs.ts"
import { series } from "./metrics.ts"

/** Lets forked fibers run until they block: waits and wake-ups go through the scheduler. */
export const yields: Effect.Effect<void> = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow
})

const flipExit = <A, E>(exit: Exit.Exit<A, E>): E => {
  assert.isTrue(Exit.isFailure(exit), "expected a failure")
  const failure = Exit.isFailure(exit) ? Cause.findErrorOption(exit.cause) : Option.none()
  assert.isTrue(Option.isSome(failure), "expected a typed failure")
  return (failure as Option.Some<E>).value
}

export const contract = (store: StoreUnderTest) =>
  describe(`contract on ${store.name}`, () => {
    const make = store.make
    const settle = store.settle ?? yields
    const smallCharges = store.smallCharges ?? 1_000_000

    describe("1. never past the cap", () => {
      it.effect("record charges up to the cap and refuses past it, changing nothing", () =>
        Effect.gen(function*() {
          const budget = yield* make({ name: "team", tokenCap: 100, usdCap: 1 })
          yield* budget.record({ tokens: 60, usd: 0.5 })
          yield* budget.record({ tokens: 40, usd: 0.5 })
          const error = yield* Effect.flip(budget.record({ tokens: 1 }))
          assert(error._tag === "BudgetExceeded")
          assert.deepStrictEqual(
            { budget: error.budget, axis: error.axis, requested: error.requested, attempted: error.attempted },
            { budget: budget.path, axis: "tokens", requested: 1, attempted: 101 }
          )
          assert.isTrue(budget.path === "team" || budget.path.endsWith("/team"))
          const snap = yield* budget.snapshot
          assert.strictEqual(snap.tokensUsed, 100)
          assert.strictEqual(snap.usdUsed, 1)
        }))

      it.effect("at exactly its cap an empty request passes; past it by overage, every request is refused", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          yield* budget.record({ tokens: 100 })
          yield* budget.record({})
          yield* budget.record({ usd: 1 })
          yield* budget.reserve({})
          const spent = yield* make({ tokenCap: 100 })
          yield* Effect.scoped(Effect.flatMap(spent.reserve({ tokens: 90 }), (r) => r.commit({ tokens: 110 })))
          for (const usage of [{}, { tokens: 0 }, { usd: 1 }]) {
            const error = yield* Effect.flip(spent.record(usage))
            assert.strictEqual(error._tag === "BudgetExceeded" && error.axis, "tokens")
            assert.strictEqual((yield* Effect.flip(spent.reserve(usage)))._tag, "BudgetExceeded")
          }
          const snap = yield* spent.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.usdUsed, snap.tokensReserved], [110, 0, 0])
        }))

      it.effect("reserve counts holds against the cap", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          yield* budget.reserve({ tokens: 70 })
          yield* budget.record({ tokens: 20 })
          const error = yield* Effect.flip(budget.reserve({ tokens: 11 }))
          assert.strictEqual(error._tag, "BudgetExceeded")
          assert.strictEqual(error._tag === "BudgetExceeded" && error.attempted, 101)
          yield* budget.reserve({ tokens: 10 })
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved, snap.tokensRemaining], [20, 80, 0])
        }))

      it.effect("one breached axis refuses the whole request", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 1000, usdCap: 0.01 })
          const error = yield* Effect.flip(budget.reserve({ tokens: 10, usd: 0.02 }))
          assert.strictEqual(error._tag === "BudgetExceeded" && error.axis, "usd")
          assert.strictEqual(error._tag === "BudgetExceeded" && error.cap, 0.01)
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved], [0, 0])
        }))

      it.effect("an unbounded axis reads Infinity and never refuses", () =>
        Effect.gen(function*() {
          const budget = yield* make({ usdCap: 1 })
          yield* budget.record({ tokens: Number.MAX_SAFE_INTEGER - 1 })
          const snap = yield* budget.snapshot
          assert.strictEqual(snap.tokenCap, Infinity)
          assert.strictEqual(snap.tokensRemaining, Infinity)
          assert.strictEqual(snap.usdRemaining, 1)
        }))

      it.effect("10,000 fibers racing for 1,000 slots: exactly 1,000 win", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 1000, usdCap: 1 })
          const outcomes = yield* Effect.forEach(
            Array.from({ length: 10_000 }, (_, i) => i),
            (i) =>
              (i % 2 === 0
                ? budget.record({ tokens: 1, usd: 0.001 })
                : Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 1, usd: 0.001 }), (r) => r.commit()))).pipe(
                  Effect.as(true),
                  Effect.catchTag("BudgetExceeded", () => Effect.succeed(false))
                ),
            { concurrency: "unbounded" }
          )
          assert.strictEqual(outcomes.filter(Boolean).length, 1000)
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.usdUsed, snap.tokensReserved], [1000, 1, 0])
        }))
    })

    describe("2. reservations are scoped resources", () => {
      it.effect("closing the scope without a commit releases the hold", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          yield* Effect.scoped(budget.reserve({ tokens: 50 }))
          assert.strictEqual((yield* budget.snapshot).tokensReserved, 0)
        }))

      it.effect("a failing call releases its hold", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100, usdCap: 1 })
          const exit = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
            yield* budget.reserve({ tokens: 50, usd: 0.5 })
            return yield* Effect.fail("provider down")
          })))
          assert.isTrue(Exit.isFailure(exit))
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved, snap.tokensUsed], [0, 0, 0])
        }))

      it.effect("a defect releases its hold", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          yield* Effect.exit(Effect.scoped(Effect.andThen(budget.reserve({ tokens: 50 }), Effect.die("boom"))))
          assert.strictEqual((yield* budget.snapshot).tokensReserved, 0)
        }))

      it.effect("an interrupted call releases its hold", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const held = yield* Deferred.make<void>()
          const fiber = yield* Effect.forkChild(Effect.scoped(Effect.gen(function*() {
            yield* budget.reserve({ tokens: 50 })
            yield* Deferred.succeed(held, undefined)
            return yield* Effect.never
          })))
          yield* Deferred.await(held)
          assert.strictEqual((yield* budget.snapshot).tokensReserved, 50)
          yield* Fiber.interrupt(fiber)
          assert.strictEqual((yield* budget.snapshot).tokensReserved, 0)
        }))

      it.effect("withReservation releases on success, failure and interruption", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          yield* budget.withReservation({ tokens: 10 }, () => Effect.void)
          yield* Effect.exit(budget.withReservation({ tokens: 10 }, () => Effect.fail("no")))
          const fiber = yield* Effect.forkChild(budget.withReservation({ tokens: 10 }, () => Effect.never))
          yield* settle
          assert.strictEqual((yield* budget.snapshot).tokensReserved, 10)
          yield* Fiber.interrupt(fiber)
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensReserved, snap.tokensUsed], [0, 0])
        }))

      it.effect("withReservation returns what use returns and keeps its commit", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const answer = yield* budget.withReservation(
            { tokens: 30 },
            (r) => Effect.as(r.commit({ tokens: 25 }), "answer")
          )
          assert.strictEqual(answer, "answer")
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensReserved, snap.tokensUsed], [0, 25])
        }))
    })

    describe("3. commit settles truthfully", () => {
      it.effect("commit charges the actual and frees the rest of the hold", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100, usdCap: 1 })
          const settlement = yield* Effect.scoped(
            Effect.flatMap(budget.reserve({ tokens: 50, usd: 0.5 }), (r) => r.commit({ tokens: 20, usd: 0.1 }))
          )
          assert.deepStrictEqual(settlement, {
            _tag: "Committed",
            tokens: 20,
            usd: 0.1,
            tokensOverage: 0,
            usdOverage: 0
          })
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.usdUsed, snap.tokensReserved, snap.usdReserved], [20, 0.1, 0, 0])
        }))

      it.effect("commit() with an axis left out charges the amount held", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100, usdCap: 1 })
          yield* Effect.scoped(
            Effect.flatMap(budget.reserve({ tokens: 50, usd: 0.5 }), (r) => r.commit({ usd: 0.2 }))
          )
          yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 5, usd: 0.1 }), (r) => r.commit()))
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.usdUsed], [55, 0.3])
        }))

      it.effect("an actual beyond the hold is charged in full, past the cap, and reported", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100, usdCap: 1 })
          yield* budget.record({ tokens: 50 })
          const settlement = yield* Effect.scoped(
            Effect.flatMap(budget.reserve({ tokens: 30, usd: 0.5 }), (r) => r.commit({ tokens: 70, usd: 1.25 }))
          )
          // 20 tokens of room were free beside the hold of 30: 70 - 30 - 20 = 20 over.
          assert.deepStrictEqual(
            [settlement.tokens, settlement.tokensOverage, settlement.usd, settlement.usdOverage],
            [70, 20, 1.25, 0.25]
          )
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.usdUsed], [120, 1.25])
          assert.deepStrictEqual([snap.tokensRemaining, snap.usdRemaining], [0, 0])
          // the budget now refuses new work, even an empty request on the spent axis
          const error = yield* Effect.flip(budget.record({ tokens: 0 }))
          assert.strictEqual(error._tag, "BudgetExceeded")
        }))

      it.effect("an excess that fits in free room is no overage", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const settlement = yield* Effect.scoped(
            Effect.flatMap(budget.reserve({ tokens: 10 }), (r) => r.commit({ tokens: 90 }))
          )
          assert.strictEqual(settlement.tokensOverage, 0)
        }))
    })

    describe("4. charged at most once", () => {
      it.effect("a record retried with its id charges once; another id charges again", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          yield* budget.record({ tokens: 30 }, { id: "request-1" })
          yield* budget.record({ tokens: 30 }, { id: "request-1" })
          yield* Effect.forEach(Array.from({ length: 20 }), () => budget.record({ tokens: 30 }, { id: "request-1" }), {
            concurrency: "unbounded"
          })
          yield* budget.record({ tokens: 30 }, { id: "request-2" })
          assert.strictEqual((yield* budget.snapshot).tokensUsed, 60)
        }))

      it.effect("a key taken again after its hold was released: the first hold's late commit and the second's commit each charge their own", () =>
        capturingLogs(() =>
          Effect.gen(function*() {
            const budget = yield* make({ tokenCap: 10_000 })
            const first = yield* Effect.scoped(budget.reserve({ tokens: 100 }, { id: "job-1" }))
            const settled = yield* Effect.scoped(Effect.gen(function*() {
              const second = yield* budget.reserve({ tokens: 100 }, { id: "job-1" })
              const late = yield* first.commit({ tokens: 30 })
              const again = yield* first.commit({ tokens: 30 })
              const own = yield* second.commit({ tokens: 50 })
              return [late.tokens, again.tokens, own.tokens]
            }))
            assert.deepStrictEqual(settled, [30, 30, 50])
            const snap = yield* budget.snapshot
            assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [80, 0])
          })
        ))

      it.effect("one id on a budget and on its child names two charges", () =>
        Effect.gen(function*() {
          const parent = yield* make({ tokenCap: 1_000 })
          const child = yield* parent.child("agent", { tokenCap: 100 })
          yield* parent.record({ tokens: 10 }, { id: "x" })
          yield* child.record({ tokens: 20 }, { id: "x" })
          yield* Effect.scoped(Effect.gen(function*() {
            yield* parent.reserve({ tokens: 40 }, { id: "y" })
            const below = yield* child.reserve({ tokens: 30 }, { id: "y" })
            assert.strictEqual(below.tokens, 30, "its own hold, not the parent's")
            yield* below.release
          }))
          const [up, down] = [yield* parent.snapshot, yield* child.snapshot]
          assert.deepStrictEqual([up.tokensUsed, up.tokensReserved, down.tokensUsed, down.tokensReserved], [30, 0, 20, 0])
        }))

      it.effect("a refused record keeps no id: retried with room, it charges", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const hold = yield* budget.reserve({ tokens: 90 })
          assert.strictEqual((yield* Effect.flip(budget.record({ tokens: 30 }, { id: "r" })))._tag, "BudgetExceeded")
          yield* hold.release
          yield* budget.record({ tokens: 30 }, { id: "r" })
          assert.strictEqual((yield* budget.snapshot).tokensUsed, 30)
        }))

      it.effect("a reserve retried with its id gets the hold still held, the settlement once committed, a new hold once released", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          yield* Effect.scoped(Effect.gen(function*() {
            const first = yield* budget.reserve({ tokens: 40 }, { id: "call-1" })
            const again = yield* budget.reserve({ tokens: 40 }, { id: "call-1" })
            assert.strictEqual((yield* budget.snapshot).tokensReserved, 40, "one hold")
            const settled = yield* again.commit({ tokens: 25 })
            assert.deepStrictEqual(yield* first.commit({ tokens: 35 }), settled)
            const late = yield* budget.reserve({ tokens: 40 }, { id: "call-1" })
            assert.deepStrictEqual(yield* late.commit({ tokens: 40 }), settled)
            assert.deepStrictEqual(yield* budget.withReservation({ tokens: 40 }, (r) => r.commit(), { id: "call-1" }), settled)
          }))
          yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 10 }, { id: "call-2" }), (r) => r.release))
          yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 10 }, { id: "call-2" }), (r) => r.commit({ tokens: 5 })))
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [30, 0])
        }))

      it.effect("reserves racing with one id, waiting or not, take one hold", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const blocker = yield* budget.reserve({ tokens: 100 })
          const waiters = yield* Effect.forkChild(Effect.forEach(
            Array.from({ length: 10 }),
            () => Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 30 }, { id: "w", onExceeded: "wait" }), (r) => r.commit())),
            { concurrency: "unbounded" }
          ))
          // All in line before the release: on a remote store, only its
          // settle waits for their round trips.
          yield* settle
          assert.isUndefined(waiters.pollUnsafe(), "they wait")
          yield* blocker.release
          const settlements = yield* Fiber.join(waiters)
          assert.strictEqual(new Set(settlements.map((s) => JSON.stringify(s))).size, 1)
          yield* Effect.forEach(Array.from({ length: 10 }), () => budget.reserve({ tokens: 5 }, { id: "n" }), {
            concurrency: "unbounded",
            discard: true
          })
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [30, 5])
        }))
    })

    describe("4. settling is idempotent", () => {
      it.effect("a second commit returns the first settlement and charges nothing", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const [first, second, released] = yield* Effect.scoped(Effect.gen(function*() {
            const r = yield* budget.reserve({ tokens: 40 })
            const first = yield* r.commit({ tokens: 30 })
            const second = yield* r.commit({ tokens: 35 })
            const released = yield* r.release
            return [first, second, released] as const
          }))
          assert.deepStrictEqual(second, first)
          assert.deepStrictEqual(released, first)
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [30, 0])
        }))

      it.effect("release after release is a no-op", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const other = yield* budget.reserve({ tokens: 10 })
          yield* Effect.scoped(Effect.gen(function*() {
            const r = yield* budget.reserve({ tokens: 40 })
            const first = yield* r.release
            assert.strictEqual(first._tag, "Released")
            assert.deepStrictEqual(yield* r.release, first)
          }))
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [0, other.tokens])
        }))

      it.effect("a commit after the scope closed charges the actual, past the cap if it must, once, with a warning", () =>
        capturingLogs((lines) => Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const late = yield* Effect.scoped(budget.reserve({ tokens: 40 }))
          yield* budget.record({ tokens: 90 })
          const settled = yield* late.commit({ tokens: 30 })
          assert.deepStrictEqual([settled._tag, settled.tokens, settled.tokensOverage], ["Committed", 30, 20])
          assert.deepStrictEqual(yield* late.commit({ tokens: 35 }), settled, "charged once")
          assert.deepStrictEqual(yield* late.release, settled)
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [120, 0])
          const warnings = warningsOf(lines)
          assert.strictEqual(warnings.length, 1)
          assert.include(warnings[0]!, `Budget "${budget.path}"`)
          assert.include(warnings[0]!, "a commit after its hold was released")
        })))
    })

    describe("5. reset", () => {
      it.effect("zeroes used and reserved", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100, usdCap: 1 })
          yield* budget.record({ tokens: 60, usd: 0.6 })
          yield* budget.reserve({ tokens: 20, usd: 0.2 })
          yield* budget.reset
          const snap = yield* budget.snapshot
          assert.deepStrictEqual(
            [snap.tokensUsed, snap.usdUsed, snap.tokensReserved, snap.usdReserved, snap.tokensRemaining],
            [0, 0, 0, 0, 100]
          )
        }))

      it.effect("releasing a stale hold is a no-op", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const stale = yield* budget.reserve({ tokens: 40 })
          yield* budget.reset
          yield* budget.reserve({ tokens: 30 })
          yield* stale.release
          assert.strictEqual((yield* budget.snapshot).tokensReserved, 30)
        }))

      it.effect("committing a stale hold charges the actual against the new window", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const stale = yield* budget.reserve({ tokens: 40 })
          yield* budget.reset
          yield* budget.reserve({ tokens: 80 })
          const settlement = yield* stale.commit({ tokens: 35 })
          // nothing of the new window was held for it: 20 free, 15 over
          assert.deepStrictEqual([settlement.tokens, settlement.tokensOverage], [35, 15])
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [35, 80])
        }))
    })

    describe("5. reset, and a child dropped and opened again", () => {
      it.effect("a stale hold committed after its child was dropped and opened again charges the child as it is now", () =>
        Effect.gen(function*() {
          const org = yield* make({ name: "org" })
          const holdScope = yield* Scope.make()
          const stale = yield* Effect.scoped(Effect.gen(function*() {
            const agent = yield* org.child("agent", { tokenCap: 50 })
            const hold = yield* Scope.provide(agent.reserve({ tokens: 40 }), holdScope)
            yield* agent.reset
            return hold
          }))
          yield* Effect.scoped(Effect.gen(function*() {
            const agent = yield* org.child("agent", { tokenCap: 50 })
            yield* stale.commit({ tokens: 40 })
            assert.strictEqual((yield* agent.snapshot).tokensUsed, 40)
            assert.strictEqual((yield* Effect.flip(agent.record({ tokens: 50 })))._tag, "BudgetExceeded")
          }))
          assert.strictEqual((yield* org.snapshot).tokensUsed, 40)
          yield* Scope.close(holdScope, Exit.void)
        }))
    })

    describe("6. exact money", () => {
      it.effect("totals past 2^53 - 1 on an axis without a cap are refused, never rounded; a commit past it fails and changes nothing", () =>
        Effect.gen(function*() {
          const budget = yield* make({})
          yield* budget.record({ usd: 9_000_000 })
          const refused = yield* Effect.flip(budget.record({ usd: 9_000_000 }))
          assert.strictEqual(refused._tag, "BudgetExceeded")
          assert.strictEqual(refused._tag === "BudgetExceeded" && refused.cap, 9_007_199.254740991)
          // What fits below the limit still counts to the nano-dollar.
          for (let i = 0; i < 10; i++) yield* budget.record({ usd: 0.000000001 })
          assert.strictEqual((yield* budget.snapshot).usdUsed, 9_000_000.00000001)
          yield* budget.record({ tokens: Number.MAX_SAFE_INTEGER - 10 })
          const hold = yield* budget.reserve({ tokens: 10 })
          // Held is counted: nothing more fits.
          assert.strictEqual((yield* Effect.flip(budget.record({ tokens: 1 })))._tag, "BudgetExceeded")
          const failed = yield* Effect.flip(hold.commit({ tokens: 11 }))
          assert.strictEqual(failed._tag, "InvalidUsage")
          assert.include(failed.message, "actual.tokens")
          const unchanged = yield* budget.snapshot
          assert.deepStrictEqual([unchanged.tokensUsed, unchanged.tokensReserved], [Number.MAX_SAFE_INTEGER - 10, 10])
          assert.strictEqual((yield* hold.commit({ tokens: 10 }))._tag, "Committed")
          assert.strictEqual((yield* budget.snapshot).tokensUsed, Number.MAX_SAFE_INTEGER)
        }))

      it.effect("10 - 0.0036 reads 9.9964", () =>
        Effect.gen(function*() {
          const budget = yield* make({ usdCap: 10 })
          yield* budget.record({ usd: 0.0036 })
          const snap = yield* budget.snapshot
          assert.strictEqual(snap.usdRemaining, 9.9964)
          assert.strictEqual(snap.usdUsed, 0.0036)
        }))

      it.effect(`${smallCharges.toLocaleString("en-US")} charges of ${1 / smallCharges} read exactly 1`, () =>
        Effect.gen(function*() {
          const budget = yield* make({ usdCap: 1 })
          yield* Effect.forEach(Array.from({ length: smallCharges }), () => budget.record({ usd: 1 / smallCharges }), {
            concurrency: 256,
            discard: true
          })
          const snap = yield* budget.snapshot
          assert.strictEqual(snap.usdUsed, 1)
          assert.strictEqual(snap.usdRemaining, 0)
          const error = yield* Effect.flip(budget.record({ usd: 0.000000001 }))
          assert.strictEqual(error._tag, "BudgetExceeded")
        }))

      it.effect("0.1 + 0.2 is 0.3, and amounts round to the nearest nano-dollar", () =>
        Effect.gen(function*() {
          const budget = yield* make({ usdCap: 1 })
          yield* budget.record({ usd: 0.1 })
          yield* budget.record({ usd: 0.2 })
          yield* budget.record({ usd: 0.0000000014 }) // 1.4 nano-dollars: 1
          yield* budget.record({ usd: 0.0000000004 }) // 0.4 nano-dollars: 0
          assert.strictEqual((yield* budget.snapshot).usdUsed, 0.300000001)
        }))

      it.effect("caps of 9,000,000 USD count to the nano-dollar", () =>
        Effect.gen(function*() {
          const budget = yield* make({ usdCap: 9_000_000 })
          yield* budget.record({ usd: 8_999_999 })
          yield* budget.record({ usd: 0.999999999 })
          yield* budget.record({ usd: 0.000000001 })
          const snap = yield* budget.snapshot
          assert.strictEqual(snap.usdUsed, 9_000_000)
          const error = yield* Effect.flip(budget.record({ usd: 0.000000001 }))
          assert.strictEqual(error._tag, "BudgetExceeded")
        }))
    })

    describe("7. bad input", () => {
      const bad: ReadonlyArray<readonly [string, object]> = [
        ["negative tokens", { tokens: -1 }],
        ["fractional tokens", { tokens: 1.5 }],
        ["NaN tokens", { tokens: NaN }],
        ["infinite tokens", { tokens: Infinity }],
        ["unsafe tokens", { tokens: 2 ** 53 }],
        ["tokens as a string", { tokens: "12" }],
        ["negative usd", { usd: -0.01 }],
        ["NaN usd", { usd: NaN }],
        ["infinite usd", { usd: Infinity }],
        ["usd past 9,007,199", { usd: 1e7 }]
      ]
      for (const [label, usage] of bad) {
        it.effect(`${label}: InvalidUsage from record, reserve, withReservation and commit, nothing changed`, () =>
          Effect.gen(function*() {
            const budget = yield* make({ tokenCap: 100, usdCap: 1 })
            const before = yield* budget.snapshot
            const errors = [
              yield* Effect.flip(budget.record(usage)),
              yield* Effect.flip(Effect.scoped(budget.reserve(usage))),
              yield* Effect.flip(budget.withReservation(usage, () => Effect.void)),
              flipExit(
                yield* Effect.exit(
                  Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 1 }), (r) => r.commit(usage)))
                )
              )
            ]
            for (const error of errors) {
              assert.strictEqual(error._tag, "InvalidUsage")
              assert.include(error.message, "Invalid")
            }
            assert.deepStrictEqual(yield* budget.snapshot, before)
          }))
      }

      it.effect("an id that is not 1 to 256 characters: InvalidUsage naming the id, nothing changed", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          for (const id of ["", "x".repeat(257), 42 as unknown as string]) {
            const errors = [
              yield* Effect.flip(budget.record({ tokens: 1 }, { id })),
              yield* Effect.flip(Effect.scoped(budget.reserve({ tokens: 1 }, { id })))
            ]
            for (const error of errors) {
              assert.strictEqual(error._tag, "InvalidUsage")
              assert.include(error.message, "Invalid id")
            }
          }
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [0, 0])
        }))

      it.effect("bad caps fail with InvalidUsage naming the cap", () =>
        Effect.gen(function*() {
          for (const options of [{ tokenCap: -1 }, { tokenCap: 0.5 }, { usdCap: -1 }, { usdCap: NaN }]) {
            const error = yield* Effect.flip(make(options))
            assert.strictEqual((error as { _tag: string })._tag, "InvalidUsage")
            assert.include((error as Error).message, Object.keys(options)[0])
          }
        }))
    })

    describe("8. waiting instead of failing", () => {
      it.effect("a waiter gets its hold when a release makes room", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const holder = yield* budget.reserve({ tokens: 80 })
          const waiter = yield* Effect.forkChild(
            Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 50 }, { onExceeded: "wait" }), (r) => r.commit()))
          )
          yield* settle
          assert.isUndefined(waiter.pollUnsafe())
          yield* holder.release
          const settlement = yield* Fiber.join(waiter)
          assert.strictEqual(settlement.tokens, 50)
          assert.strictEqual((yield* budget.snapshot).tokensUsed, 50)
        }))

      it.effect("a commit that frees room and a reset both wake waiters", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const holder = yield* budget.reserve({ tokens: 100 })
          const first = yield* Effect.forkChild(Effect.scoped(budget.reserve({ tokens: 60 }, { onExceeded: "wait" })))
          yield* settle
          yield* holder.commit({ tokens: 40 })
          yield* Fiber.join(first)
          const second = yield* Effect.forkChild(Effect.scoped(budget.reserve({ tokens: 80 }, { onExceeded: "wait" })))
          yield* settle
          assert.isUndefined(second.pollUnsafe())
          yield* budget.reset
          yield* Fiber.join(second)
        }))

      it.effect("first come, first served: a large request is not starved by small ones", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const order = yield* Ref.make<ReadonlyArray<string>>([])
          const holder = yield* budget.reserve({ tokens: 50 })
          const waitFor = (label: string, tokens: number) =>
            Effect.forkChild(Effect.scoped(Effect.gen(function*() {
              const r = yield* budget.reserve({ tokens }, { onExceeded: "wait" })
              yield* Ref.update(order, (o) => [...o, label])
              return r
            })).pipe(Effect.asVoid))
          const large = yield* waitFor("large", 100)
          yield* settle
          // 10 would fit now, but the large request came first
          const small = yield* waitFor("small", 10)
          yield* settle
          assert.deepStrictEqual(yield* Ref.get(order), [])
          assert.strictEqual((yield* budget.snapshot).tokensReserved, 50)
          yield* holder.release
          yield* Fiber.join(large)
          yield* Fiber.join(small)
          assert.deepStrictEqual(yield* Ref.get(order), ["large", "small"])
        }))

      it.effect("waiters are served in arrival order", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 10 })
          const holder = yield* budget.reserve({ tokens: 10 })
          const order: Array<number> = []
          const fibers = []
          for (let i = 0; i < 20; i++) {
            fibers.push(yield* Effect.forkChild(budget.withReservation(
              { tokens: 1 + (i % 7) },
              (r) => Effect.andThen(Effect.sync(() => order.push(i)), r.commit({ tokens: 0 })),
              { onExceeded: "wait" }
            )))
            yield* Effect.yieldNow
          }
          yield* settle
          yield* holder.release
          yield* Fiber.joinAll(fibers)
          assert.deepStrictEqual(order, Array.from({ length: 20 }, (_, i) => i))
        }))

      it.effect("a request larger than the cap fails at once", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100, usdCap: 1 })
          const tokens = yield* Effect.flip(Effect.scoped(budget.reserve({ tokens: 101 }, { onExceeded: "wait" })))
          const usd = yield* Effect.flip(Effect.scoped(budget.reserve({ usd: 1.01 }, { onExceeded: "wait" })))
          assert.deepStrictEqual([tokens._tag, usd._tag], ["BudgetExceeded", "BudgetExceeded"])
          assert.strictEqual(usd._tag === "BudgetExceeded" && usd.axis, "usd")
        }))

      it.effect("a waiter that can no longer fit once a cap is lowered fails at once; the next is served", () =>
        capturingLogs(() => Effect.gen(function*() {
          const org = yield* make({ name: "org" })
          const agent = yield* org.child("agent", { tokenCap: 100 })
          yield* agent.reserve({ tokens: 30 })
          const large = yield* Effect.forkChild(Effect.scoped(agent.reserve({ tokens: 80 }, { onExceeded: "wait" })))
          yield* settle
          const small = yield* Effect.forkChild(Effect.scoped(agent.reserve({ tokens: 1 }, { onExceeded: "wait" })))
          yield* settle
          assert.isUndefined(small.pollUnsafe(), "the small one waits behind the large one")
          yield* org.child("agent", { tokenCap: 50 })
          const refused = flipExit(yield* Fiber.await(large))
          assert.strictEqual(refused._tag, "BudgetExceeded")
          yield* Fiber.join(small)
        })))

      it.effect("so does one waiting behind another, or in a line below the budget whose cap is lowered", () =>
        capturingLogs(() => Effect.gen(function*() {
          const org = yield* make({ name: "org" })
          const agent = yield* org.child("agent", { tokenCap: 100 })
          const task = yield* agent.child("task", { tokenCap: 50 })
          yield* agent.reserve({ tokens: 40 })
          yield* task.reserve({ tokens: 50 })
          const small = yield* Effect.forkChild(Effect.scoped(agent.reserve({ tokens: 30 }, { onExceeded: "wait" })))
          yield* settle
          const behind = yield* Effect.forkChild(Effect.scoped(agent.reserve({ tokens: 80 }, { onExceeded: "wait" })))
          const below = yield* Effect.forkChild(Effect.scoped(task.reserve({ tokens: 40 }, { onExceeded: "wait" })))
          yield* settle
          assert.isUndefined(behind.pollUnsafe(), "it waits")
          yield* org.child("agent", { tokenCap: 35 })
          assert.strictEqual(flipExit(yield* Fiber.await(behind))._tag, "BudgetExceeded")
          assert.strictEqual(flipExit(yield* Fiber.await(below))._tag, "BudgetExceeded")
          assert.isUndefined(small.pollUnsafe(), "one that can still fit waits on")
        })))

      it.effect("a wait bounded by Effect.timeout gives up holding nothing", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          yield* budget.reserve({ tokens: 100 })
          const fiber = yield* Effect.forkChild(
            Effect.scoped(budget.reserve({ tokens: 10 }, { onExceeded: "wait" })).pipe(Effect.timeout("1 second"))
          )
          yield* settle
          yield* TestClock.adjust("1 second")
          const exit = yield* Fiber.await(fiber)
          assert.isTrue(Exit.isFailure(exit))
          assert.strictEqual((yield* budget.snapshot).tokensReserved, 100)
        }))

      it.effect("an interrupted waiter holds nothing and lets the next one in", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const holder = yield* budget.reserve({ tokens: 100 })
          const first = yield* Effect.forkChild(Effect.scoped(budget.reserve({ tokens: 100 }, { onExceeded: "wait" })))
          yield* settle
          const second = yield* Effect.forkChild(
            Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 30 }, { onExceeded: "wait" }), (r) => r.commit()))
          )
          yield* settle
          yield* holder.commit({ tokens: 60 })
          yield* settle
          assert.isUndefined(second.pollUnsafe(), "the second waits behind the first")
          yield* Fiber.interrupt(first)
          yield* Fiber.join(second)
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [90, 0])
        }))

      it.effect("a waiter interrupted just after its wake-up leaks nothing", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 100 })
          const holder = yield* budget.reserve({ tokens: 100 })
          const first = yield* Effect.forkChild(Effect.scoped(budget.reserve({ tokens: 70 }, { onExceeded: "wait" })))
          const second = yield* Effect.forkChild(
            Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 100 }, { onExceeded: "wait" }), (r) => r.commit()))
          )
          yield* settle
          // wake the first and interrupt it before it can run
          yield* Effect.andThen(holder.release, Fiber.interrupt(first))
          yield* Fiber.join(second)
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [100, 0])
        }))

      const drainWaiters = store.drainWaiters ?? 10_000
      it.effect(`${drainWaiters.toLocaleString("en-US")} waiters drain through a cap that fits one at a time`, () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 1 })
          const holder = yield* budget.reserve({ tokens: 1 })
          const fibers = yield* Effect.forEach(
            Array.from({ length: drainWaiters }),
            () =>
              Effect.forkChild(budget.withReservation({ tokens: 1 }, (r) => r.commit({ tokens: 0 }), {
                onExceeded: "wait"
              })),
            { concurrency: 1 }
          )
          yield* settle
          yield* holder.release
          yield* Fiber.joinAll(fibers)
          const snap = yield* budget.snapshot
          assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved], [0, 0])
        }))
    })

    describe("events", () => {
      it.effect("a budget opened again with other caps takes them, with an event and a warning naming both", () =>
        capturingLogs((lines) => Effect.gen(function*() {
          const org = yield* make({ name: "org" })
          yield* org.child("team", { tokenCap: 100, usdCap: 1 })
          const seen: Array<BudgetEvent> = []
          yield* Effect.forkScoped(Stream.runForEach(org.events, (event) => Effect.sync(() => seen.push(event))))
          yield* settle
          yield* settle
          // The same caps again: nothing to say.
          const team = yield* org.child("team", { tokenCap: 100, usdCap: 1 })
          yield* org.child("team", { tokenCap: 80 })
          yield* settle
          const error = yield* Effect.flip(team.record({ tokens: 81 }))
          assert.strictEqual(error._tag === "BudgetExceeded" && error.cap, 80, "the caps given last apply")
          assert.deepStrictEqual(seen.filter((event) => event._tag === "Reconfigured"), [{
            _tag: "Reconfigured",
            budget: team.path,
            tokenCap: 80,
            usdCap: Infinity,
            previousTokenCap: 100,
            previousUsdCap: 1
          }])
          const warnings = warningsOf(lines)
          assert.strictEqual(warnings.length, 1)
          for (const part of [`"${team.path}"`, "tokenCap 80 and usdCap none", "tokenCap 100 and usdCap $1"]) {
            assert.include(warnings[0], part)
          }
        })))

      it.effect("every charge, hold, settlement and refusal, in order, with the budget's path", () =>
        Effect.gen(function*() {
          const org = yield* make({ name: "org", tokenCap: 100, thresholds: [] })
          const agent = yield* org.child("agent")
          const seen: Array<BudgetEvent> = []
          yield* Effect.forkScoped(Stream.runForEach(org.events, (event) => Effect.sync(() => seen.push(event))))
          yield* settle
          yield* settle
          yield* agent.record({ tokens: 10, usd: 0.01 })
          yield* Effect.scoped(Effect.flatMap(agent.reserve({ tokens: 20 }), (r) => r.commit({ tokens: 25 })))
          yield* Effect.scoped(agent.reserve({ tokens: 5 }))
          yield* Effect.scoped(Effect.flatMap(agent.reserve({ tokens: 3 }), (r) => r.commit()))
          yield* Effect.flip(agent.record({ tokens: 80 }))
          yield* org.reset
          yield* settle
          const committed = { _tag: "Committed", budget: agent.path, usd: 0, tokensOverage: 0, usdOverage: 0 } as const
          assert.deepStrictEqual(seen, [
            { _tag: "Recorded", budget: agent.path, tokens: 10, usd: 0.01 },
            { _tag: "Reserved", budget: agent.path, tokens: 20, usd: 0 },
            { ...committed, tokens: 25, estimated: false },
            { _tag: "Reserved", budget: agent.path, tokens: 5, usd: 0 },
            { _tag: "Released", budget: agent.path, tokens: 5, usd: 0 },
            { _tag: "Reserved", budget: agent.path, tokens: 3, usd: 0 },
            // commit() with no actual charges what was held, and says so
            { ...committed, tokens: 3, estimated: true },
            { _tag: "Exceeded", budget: org.path, limit: "cap", axis: "tokens", requested: 80, attempted: 118, cap: 100 },
            { _tag: "Reset", budget: org.path, windowEndsAt: undefined }
          ])
        }))

      it.effect("a threshold follows the charge that crossed it, at each level, once per axis until a reset", () =>
        Effect.gen(function*() {
          const org = yield* make({ name: "org", tokenCap: 100, usdCap: 1, thresholds: [0.5, 0.8] })
          const agent = yield* org.child("agent", { tokenCap: 10, thresholds: [0.5] })
          const seen: Array<BudgetEvent> = []
          yield* Effect.forkScoped(Stream.runForEach(org.events, (event) => Effect.sync(() => seen.push(event))))
          yield* settle
          yield* settle
          yield* agent.record({ tokens: 6 })
          yield* Effect.scoped(Effect.flatMap(agent.reserve({ tokens: 4 }), (r) => r.commit({ tokens: 4 })))
          yield* org.record({ tokens: 45 })
          yield* org.record({ tokens: 30, usd: 0.9 })
          yield* org.record({ tokens: 1 })
          yield* org.reset
          yield* org.record({ tokens: 50 })
          yield* settle
          assert.deepStrictEqual(
            seen.map((e) =>
              e._tag === "ThresholdCrossed"
                ? `${e.budget === org.path ? "org" : e.budget === agent.path ? "agent" : e.budget} ${e.axis} ${e.threshold} ${e.used}/${e.cap}`
                : e._tag
            ),
            [
              "Recorded",
              "agent tokens 0.5 6/10",
              "Reserved",
              "Committed",
              "Recorded",
              "org tokens 0.5 55/100",
              "Recorded",
              "org tokens 0.8 85/100",
              "org usd 0.5 0.9/1",
              "org usd 0.8 0.9/1",
              "Recorded",
              "Reset",
              "Recorded",
              "org tokens 0.5 50/100"
            ]
          )
        }))
    })

    describe("rates and concurrency", () => {
      // Periods of an hour: what refills while a test runs is a sliver of a token.
      it.effect("a rate at any level refuses what its bucket does not hold, naming the level, the limit and when", () =>
        Effect.gen(function*() {
          const org = yield* make({ name: "org", rate: { tokens: 100, per: "1 hour" } })
          const agent = yield* org.child("agent", { tokenCap: 1_000 })
          const seen: Array<BudgetEvent> = []
          yield* Effect.forkScoped(Stream.runForEach(org.events, (event) => Effect.sync(() => seen.push(event))))
          yield* settle
          yield* settle
          yield* agent.record({ tokens: 100 })
          const refused = flipExit(yield* Effect.exit(agent.record({ tokens: 1 })))
          assert.strictEqual(refused._tag, "BudgetExceeded")
          if (refused._tag !== "BudgetExceeded") return
          assert.deepStrictEqual([refused.budget, refused.limit, refused.axis, refused.cap], [org.path, "rate", "tokens", 100])
          assert.isAbove(Duration.toMillis(refused.retryAfter!), 0)
          assert.strictEqual((yield* agent.snapshot).tokensUsed, 100, "nothing applied at any level")
          // its event says when too
          yield* settle
          const event = seen.find((e) => e._tag === "Exceeded")
          assert.isTrue(event?._tag === "Exceeded" && event.retryAfter !== undefined)
          if (event?._tag === "Exceeded") {
            assert.approximately(Duration.toMillis(event.retryAfter!), Duration.toMillis(refused.retryAfter!), 1)
          }
        }))

      it.effect("every record and reserve is a request; a release gives its tokens back, not its request", () =>
        Effect.gen(function*() {
          const budget = yield* make({ name: "rpm", rate: { tokens: 100, requests: 3, per: "1 hour" } })
          yield* Effect.scoped(budget.reserve({ tokens: 100 }))
          yield* budget.record({ tokens: 99 })
          yield* budget.record({})
          const refused = flipExit(yield* Effect.exit(budget.record({})))
          assert.deepStrictEqual(
            refused._tag === "BudgetExceeded" && [refused.limit, refused.axis, refused.requested],
            ["rate", "requests", 1]
          )
        }))

      it.effect("a commit gives back what its hold did not use, and takes an excess as debt: never refused", () =>
        Effect.gen(function*() {
          const budget = yield* make({ name: "debt", rate: { tokens: 1_000, per: "1 hour" } })
          yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 1_000 }), (hold) => hold.commit({ tokens: 200 })))
          yield* budget.record({ tokens: 800 })
          const settled = yield* Effect.scoped(Effect.flatMap(budget.reserve({}), (hold) => hold.commit({ tokens: 100 })))
          assert.strictEqual(settled.tokens, 100)
          const [rate] = (yield* budget.snapshot).rates
          assert.deepStrictEqual([rate!.axis, rate!.capacity], ["tokens", 1_000])
          assert.isBelow(rate!.available, -99, "100 in debt")
          const refused = flipExit(yield* Effect.exit(budget.record({})))
          assert.deepStrictEqual(refused._tag === "BudgetExceeded" && refused.axis, "tokens", "in debt, nothing passes")
        }))

      it.effect("maxConcurrent: holds in flight never pass it, a record is no hold, a settled hold frees its place", () =>
        Effect.scoped(Effect.gen(function*() {
          const budget = yield* make({ name: "two", maxConcurrent: 2 })
          const first = yield* budget.reserve({ tokens: 1 })
          yield* budget.reserve({ tokens: 1 })
          yield* budget.record({ tokens: 1 })
          const refused = flipExit(yield* Effect.exit(Effect.scoped(budget.reserve({ tokens: 1 }))))
          assert.deepStrictEqual(
            refused._tag === "BudgetExceeded" && [refused.limit, refused.axis, refused.cap],
            ["concurrency", "requests", 2]
          )
          assert.deepStrictEqual([(yield* budget.snapshot).inFlight, (yield* budget.snapshot).maxConcurrent], [2, 2])
          yield* first.commit()
          yield* budget.reserve({ tokens: 1 })
        })))

      it.effect("a budget opened again with another rate keeps what its buckets of the same axes hold, and says so", () =>
        capturingLogs((lines) => Effect.gen(function*() {
          const org = yield* make({ name: "org" })
          const agent = yield* org.child("agent", { rate: { tokens: 100, per: "1 hour" } })
          yield* agent.record({ tokens: 100 })
          // no fresh burst for opening it again: the tokens bucket is as empty as it was
          const again = yield* org.child("agent", { rate: { tokens: 200, requests: 10, per: "1 hour" } })
          const refused = flipExit(yield* Effect.exit(again.record({ tokens: 1 })))
          assert.deepStrictEqual(refused._tag === "BudgetExceeded" && [refused.limit, refused.axis], ["rate", "tokens"])
          const [tokens, requests] = (yield* again.snapshot).rates
          assert.deepStrictEqual([tokens!.capacity, requests!.available, requests!.capacity], [200, 10, 10])
          assert.isBelow(tokens!.available, 1)
          const warnings = warningsOf(lines)
          assert.strictEqual(warnings.length, 1, "never silent")
          for (const part of ["rate 200 tokens per 3600000 ms, 10 requests per 3600000 ms", "rate 100 tokens per 3600000 ms"]) {
            assert.include(warnings[0], part)
          }
        })))

      it.effect("a hold taken before a most in flight was set counts against it", () =>
        capturingLogs(() => Effect.scoped(Effect.gen(function*() {
          const org = yield* make({ name: "org" })
          const agent = yield* org.child("agent")
          yield* agent.reserve({ tokens: 1 })
          const limited = yield* org.child("agent", { maxConcurrent: 1 })
          const refused = flipExit(yield* Effect.exit(Effect.scoped(limited.reserve({ tokens: 1 }))))
          assert.deepStrictEqual(refused._tag === "BudgetExceeded" && refused.limit, "concurrency")
        }))))

      it.effect("a request a bucket of a level above can never hold gets no retryAfter", () =>
        Effect.gen(function*() {
          const org = yield* make({ name: "org", rate: { tokens: 50, per: "1 hour" } })
          const agent = yield* org.child("agent", { rate: { tokens: 100, per: "1 hour" } })
          yield* agent.record({ tokens: 40 })
          const refused = flipExit(yield* Effect.exit(agent.record({ tokens: 70 })))
          assert.deepStrictEqual(
            refused._tag === "BudgetExceeded" && [refused.limit, refused.retryAfter],
            ["rate", undefined]
          )
        }))

      it.effect("a request larger than a bucket holds is refused at once, waiting or not, with no retryAfter", () =>
        Effect.gen(function*() {
          const budget = yield* make({ name: "large", rate: { tokens: 100, per: "1 hour" } })
          const refused = flipExit(yield* Effect.exit(Effect.scoped(budget.reserve({ tokens: 101 }, { onExceeded: "wait" }))))
          assert.deepStrictEqual(
            refused._tag === "BudgetExceeded" && [refused.limit, refused.retryAfter],
            ["rate", undefined]
          )
        }))
    })

    describe("event streams are bounded", () => {
      it.effect("a subscriber that falls behind keeps the newest 10,000 events, each dropped one counted; its stream ends with the store", () =>
        Effect.gen(function*() {
          const storeScope = yield* Scope.make()
          const budget = yield* Scope.provide(make({ name: "stalled" }), storeScope)
          const gate = yield* Deferred.make<void>()
          const received = yield* Ref.make(0)
          const reader = yield* Effect.forkChild(Stream.runForEach(budget.events, () =>
            Effect.andThen(Deferred.await(gate), Ref.update(received, (n) => n + 1))))
          yield* settle
          yield* settle
          const records = 12_000
          yield* Effect.forEach(Array.from({ length: records }), () => budget.record({ tokens: 1 }), {
            concurrency: 64,
            discard: true
          })
          const dropped = () => Effect.map(series(budget.path), (all) => all["budget_events_dropped_total"] as number)
          // Past 10,000 waiting for it, the oldest go (a remote store's events may land later: polled).
          while ((yield* dropped()) === 0) yield* settle
          yield* Deferred.succeed(gate, undefined)
          // Every event is read or counted as dropped: none is lost silently.
          while ((yield* Ref.get(received)) + (yield* dropped()) < records) yield* settle
          assert.strictEqual((yield* Ref.get(received)) + (yield* dropped()), records)
          yield* Scope.close(storeScope, Exit.void)
          assert.isTrue(Exit.isSuccess(yield* Fiber.await(reader)), "the stream ends, not interrupted")
        }), 60_000)
    })

    describe("thresholds at a cap of 0", () => {
      it.effect("none is crossed on an axis capped at 0: use never rises from below 0", () =>
        Effect.gen(function*() {
          const budget = yield* make({ tokenCap: 0, usdCap: 10, thresholds: [0.5, 0.8, 1] })
          const seen: Array<BudgetEvent> = []
          yield* Effect.forkScoped(Stream.runForEach(budget.events, (event) => Effect.sync(() => seen.push(event))))
          yield* settle
          yield* settle
          yield* budget.record({ usd: 6 })
          yield* Effect.scoped(Effect.flatMap(budget.reserve({ usd: 1 }), (r) => r.commit({ tokens: 5, usd: 1 })))
          yield* settle
          assert.deepStrictEqual(
            seen.filter((e) => e._tag === "ThresholdCrossed").map((e) => e._tag === "ThresholdCrossed" && `${e.axis} ${e.threshold}`),
            ["usd 0.5"]
          )
        }))
    })

    describe("children: the tenants view", () => {
      it.effect("lists each child's snapshot by name, with what it used and holds; grandchildren count in their parent", () =>
        Effect.gen(function*() {
          const org = yield* make({ name: "org", tokenCap: 1_000 })
          assert.deepStrictEqual(yield* org.children, [])
          const b = yield* org.child("tenant-b", { tokenCap: 300 })
          const a = yield* org.child("tenant-a")
          const agent = yield* a.child("agent")
          yield* a.record({ tokens: 10, usd: 0.5 })
          yield* agent.record({ tokens: 5 })
          yield* b.reserve({ tokens: 7 })
          const listed = yield* org.children
          assert.deepStrictEqual(
            listed.map((s) => [s.name, s.path, s.tokensUsed, s.usdUsed, s.tokensReserved, s.tokenCap]),
            [
              ["tenant-a", `${org.path}/tenant-a`, 15, 0.5, 0, Infinity],
              ["tenant-b", `${org.path}/tenant-b`, 0, 0, 7, 300]
            ]
          )
          assert.deepStrictEqual((yield* a.children).map((s) => [s.path, s.tokensUsed]), [[`${org.path}/tenant-a/agent`, 5]])
          assert.deepStrictEqual(yield* agent.children, [])
        }))
    })

    describe("metrics", () => {
      it.effect("gauges and counters per budget; a budget opened twice reports once, until both close", () =>
        Effect.gen(function*() {
          const org = yield* make({ name: "metrics-org", tokenCap: 1000, usdCap: 1 })
          const agent = yield* org.child("agent", { tokenCap: 100 })
          yield* agent.record({ tokens: 10, usd: 0.1 })
          yield* agent.reserve({ tokens: 20, usd: 0.2 })
          yield* Effect.scoped(Effect.flatMap(agent.reserve({ tokens: 30 }), (r) => r.commit({ tokens: 25 })))
          // Opened again and closed: the budget still reports, once.
          yield* Effect.scoped(
            Effect.flatMap(org.child("agent", { tokenCap: 100 }), (again) => Effect.scoped(again.reserve({ tokens: 5 })))
          )
          yield* Effect.flip(agent.record({ tokens: 100 }))
          // A remote store's gauges show its latest snapshot.
          yield* agent.snapshot
          yield* org.snapshot
          const expected = {
            budget_tokens_used: 35,
            budget_usd_used: 0.1,
            budget_tokens_reserved: 20,
            budget_usd_reserved: 0.2,
            budget_tokens_remaining: 45,
            budget_committed_total: 1,
            budget_released_total: 1,
            budget_exceeded_total: 1
          }
          // Every store reports these; one may add its own (Redis: budget_state_lost_total).
          const agent_ = yield* series(agent.path)
          assert.deepStrictEqual(Object.fromEntries(Object.keys(expected).map((id) => [id, agent_[id]])), expected)
          const org_ = yield* series(org.path)
          assert.deepStrictEqual(
            [org_["budget_tokens_used"], org_["budget_usd_remaining"], org_["budget_committed_total"], org_["budget_exceeded_total"]],
            [35, 0.7, 1, 0]
          )
          const registered = (yield* Metric.snapshot).filter((s) =>
            s.attributes?.["budget"] === agent.path && s.id === "budget_committed_total"
          )
          assert.strictEqual(registered.length, 1)
        }))

      it.effect("metrics: false registers none; a closed budget removes its own", () =>
        Effect.gen(function*() {
          const paths = yield* Effect.scoped(Effect.gen(function*() {
            const quiet = yield* make({ name: "quiet", metrics: false })
            yield* quiet.record({ tokens: 1 })
            assert.deepStrictEqual(yield* series(quiet.path), {})
            const loud = yield* make({ name: "loud" })
            assert.strictEqual((yield* series(loud.path))["budget_tokens_used"], 0)
            return [loud.path]
          }))
          assert.deepStrictEqual(yield* series(paths[0]!), {})
        }))
    })

    describe("interruption at every step of a reservation's life", () => {
      // A call that reserves, works, commits, then works on inside its scope;
      // interrupted after `steps` scheduler turns, wherever that lands, or,
      // the last time, left to finish. A call that fails when it does not
      // fit is let in before it starts; one that waits, once it waits.
      const lastStep = 40
      it.effect("interrupting after any number of turns leaks no hold and charges at most once", () =>
        Effect.gen(function*() {
          for (let steps = 0; steps <= lastStep; steps++) {
            const onExceeded = steps % 2 === 0 ? "wait" : "fail"
            const budget = yield* make({ tokenCap: 1000, usdCap: 10 })
            const holder = yield* budget.reserve({ tokens: 950 })
            const call = Effect.scoped(Effect.gen(function*() {
              const r = yield* budget.reserve({ tokens: 100, usd: 1 }, { onExceeded })
              for (let i = 0; i < 5; i++) yield* Effect.yieldNow
              yield* r.commit({ tokens: 80, usd: 0.5 })
              for (let i = 0; i < 5; i++) yield* Effect.yieldNow
            }))
            const fiber = yield* Effect.forkChild(call)
            if (onExceeded === "wait") {
              // Once everything has landed, a call still running waits: one
              // that did not wait would have failed with BudgetExceeded.
              yield* settle
              assert.isUndefined(fiber.pollUnsafe(), `the call waits for room (${steps} turns)`)
            }
            yield* holder.release
            if (steps < lastStep) {
              for (let i = 0; i < steps; i++) yield* Effect.yieldNow
              yield* Fiber.interrupt(fiber)
            }
            const exit = yield* Fiber.await(fiber)
            assert.isTrue(
              Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause),
              `completed or interrupted after ${steps} turns, never refused: ${exit}`
            )
            const snap = yield* budget.snapshot
            assert.strictEqual(snap.tokensReserved, 0, `after ${steps} turns`)
            assert.isTrue(snap.tokensUsed === 0 || snap.tokensUsed === 80, `charged once after ${steps} turns`)
            assert.strictEqual(snap.usdUsed, snap.tokensUsed === 0 ? 0 : 0.5)
            if (steps === lastStep) {
              assert.isTrue(Exit.isSuccess(exit), "left alone, the waiting call completes")
              assert.strictEqual(snap.tokensUsed, 80, "and charges its commit")
            }
          }
        }))
    })
  })
