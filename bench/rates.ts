/**
 * Rates: a rate-limited budget beside the rate limiters people reach for,
 * effect's `RateLimiter` (memory store, token bucket) and
 * rate-limiter-flexible's `RateLimiterMemory.consume` (a fixed window, the
 * only kind it has), measured in the same run. An admitted call (ours a
 * reserve + commit, or a record) against an admitted `consume`, and a
 * refused call against a refused `consume`, each consuming one call's
 * 1,200 tokens.
 *
 * Ours does more per call: a bucket for tokens and one for requests, caps
 * on both axes, a hold with its place in flight, and a commit that gives
 * back what the hold did not use; each peer counts one number.
 */
import { pathToFileURL } from "node:url"
import { Effect, Layer } from "effect"
import type { Scope } from "effect"
import { RateLimiter } from "effect/persistence"
import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible"
import { Budget, type BudgetService, maxUsd } from "../src/index.ts"
import { budgetCases, names as ours } from "./budget.ts"
import type { Case } from "./case.ts"
import { floors } from "./floors.ts"
import { timeAwait, timeLoop } from "./harness.ts"
import { plan, run } from "./runner.ts"
import { render } from "./table.ts"
import { actual, estimate, ops } from "./workload.ts"

export const names = {
  record: "rate: record, admitted",
  bracket: "rate: withReservation + commit, admitted",
  scoped: "rate: scoped reserve + commit, admitted",
  recordRefused: "rate: record, refused",
  bracketRefused: "rate: withReservation, refused",
  flexible: "peer: rate-limiter-flexible consume, admitted",
  limiter: "peer: effect RateLimiter token bucket, admitted",
  flexibleRefused: "peer: rate-limiter-flexible consume, refused",
  limiterRefused: "peer: effect RateLimiter token bucket, refused"
} as const

/**
 * Admitted: 10 billion tokens and 10 million requests a minute. A run takes
 * at most 5.1 million calls of 1,200 tokens from one bucket (3 rows of 17
 * rounds of 100,000), so the full buckets alone admit every one; a call
 * refused would fail its row.
 */
const roomy = { tokens: 10_000_000_000, requests: 10_000_000 }
/** Refused: a bucket of one call's tokens a day, spent before the run. */
const spent = { tokens: estimate.tokens, day: 86_400 }

const caps = { tokenCap: Number.MAX_SAFE_INTEGER, usdCap: maxUsd }

/** Succeeds when `effect` is refused; admitted, or failing otherwise, it fails the sample. */
const refused = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  isRefusal: (e: E) => boolean
): Effect.Effect<void, unknown, R> =>
  Effect.matchEffect(effect, {
    onFailure: (e) => isRefusal(e) ? Effect.void : Effect.fail(e),
    onSuccess: () => Effect.fail(new Error("admitted: the bucket was meant to be spent"))
  })

const isRateRefusal = (e: { readonly _tag: string; readonly limit?: string }): boolean =>
  e._tag === "BudgetExceeded" && e.limit === "rate"

const isLimiterRefusal = (e: RateLimiter.RateLimiterError): boolean => e.reason._tag === "RateLimitExceeded"

const limiterLayer = RateLimiter.layer.pipe(Layer.provide(RateLimiter.layerStoreMemory))

export const rateCases: Effect.Effect<ReadonlyArray<Case>, never, Scope.Scope> = Effect.gen(function*() {
  const admitting: BudgetService = yield* Effect.orDie(
    Budget.make({ name: "rate-admitted", ...caps, rate: { ...roomy, per: "1 minute" } })
  )
  const refusing: BudgetService = yield* Effect.orDie(
    Budget.make({
      name: "rate-refused",
      ...caps,
      rate: { tokens: spent.tokens, requests: roomy.requests, per: "1 day" }
    })
  )
  yield* Effect.orDie(refusing.record(estimate))

  const flexible = new RateLimiterMemory({ points: Number.MAX_SAFE_INTEGER, duration: 60 })
  const flexibleSpent = new RateLimiterMemory({ points: spent.tokens, duration: spent.day })
  yield* Effect.promise(() => flexibleSpent.consume("bench", spent.tokens))
  const limiter = yield* Effect.provide(RateLimiter.RateLimiter, limiterLayer)
  const admittedBucket = { key: "admitted", algorithm: "token-bucket", limit: roomy.tokens, window: "1 minute" } as const
  const spentBucket = { key: "spent", algorithm: "token-bucket", limit: spent.tokens, window: "1 day" } as const
  yield* Effect.orDie(limiter.consume({ ...spentBucket, tokens: spent.tokens }))

  const peers = (flexibleName: string, limiterName: string, ourFloor?: string) => [
    { case: flexibleName, target: 1.0 },
    { case: limiterName, target: 1.0 },
    // What the rate adds to the same operation on a budget without one.
    ...(ourFloor === undefined ? [] : [{ case: ourFloor }])
  ]
  const admittedPeers = (floor: string) => peers(names.flexible, names.limiter, floor)
  const refusedPeers = peers(names.flexibleRefused, names.limiterRefused)

  return [
    {
      name: names.flexible,
      // Promise-based, each awaited; a rejection fails the sample.
      sample: Effect.tryPromise(() => timeAwait(ops.small, () => flexible.consume("bench", estimate.tokens)))
    },
    {
      name: names.limiter,
      sample: timeLoop(ops.small, () => limiter.consume({ ...admittedBucket, tokens: estimate.tokens }))
    },
    {
      name: names.flexibleRefused,
      sample: Effect.tryPromise(() =>
        timeAwait(ops.refusal, () =>
          flexibleSpent.consume("bench", spent.tokens).then(
            () => Promise.reject(new Error("admitted: the bucket was meant to be spent")),
            (e: unknown) => e instanceof RateLimiterRes ? undefined : Promise.reject(e)
          ))
      )
    },
    {
      name: names.limiterRefused,
      sample: timeLoop(
        ops.refusal,
        () => refused(limiter.consume({ ...spentBucket, tokens: spent.tokens }), isLimiterRefusal)
      )
    },
    {
      name: names.record,
      sample: timeLoop(ops.small, () => admitting.record(estimate)),
      versus: admittedPeers(ours.record)
    },
    {
      name: names.bracket,
      sample: timeLoop(ops.small, () => admitting.withReservation(estimate, (r) => r.commit(actual))),
      versus: admittedPeers(ours.bracket)
    },
    {
      name: names.scoped,
      sample: timeLoop(
        ops.small,
        () => Effect.scoped(Effect.flatMap(admitting.reserve(estimate), (r) => r.commit(actual)))
      ),
      versus: admittedPeers(ours.scoped)
    },
    {
      name: names.recordRefused,
      sample: timeLoop(ops.refusal, () => refused(refusing.record(estimate), isRateRefusal)),
      versus: refusedPeers
    },
    {
      name: names.bracketRefused,
      sample: timeLoop(
        ops.refusal,
        () => refused(refusing.withReservation(estimate, (r) => r.commit(actual)), isRateRefusal)
      ),
      versus: refusedPeers
    }
  ]
})

// Alone (`npx tsx --expose-gc bench/rates.ts`): these rows and the budget
// rows (and their floors) they are judged against, with the bench's plan.
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const cases = yield* Effect.all([floors, budgetCases, rateCases])
    console.log(render(yield* run(cases.flat(), plan)))
  })))
}
