/**
 * What open holds cost Redis while they wait: the store renews every lease
 * of a process in one script call every lease/3, whatever the number of
 * holds. With 1,000 holds open over a few leases, the calls are counted in
 * this process, through a `Redis` service that counts its script calls:
 * unlike `INFO commandstats`, no other client of the same Redis can skew the
 * count. The figure is printed below the table.
 */
import { Duration, Effect, Exit, Scope } from "effect"
import * as Redis from "effect/persistence/Redis"
import { Budget, maxUsd } from "../src/index.ts"
import { connect, prefix } from "./redis.ts"
import { estimate } from "./workload.ts"

const holds = 1_000
const leaseTtl = Duration.seconds(3)
const leases = 2

interface Calls {
  count: number
  /** Arguments sent, keys included: one per lease renewed, plus two. */
  args: number
  nanos: bigint
}

/** `redis`, counting and timing every script call made through it. */
const counting = (redis: Redis.Redis["Service"], calls: Calls): Redis.Redis["Service"] => ({
  ...redis,
  eval: (script) => {
    const run = redis.eval(script)
    return (...params) =>
      Effect.suspend(() => {
        const start = process.hrtime.bigint()
        return run(...params).pipe(Effect.ensuring(Effect.sync(() => {
          calls.count++
          calls.args += script.params(...params).length
          calls.nanos += process.hrtime.bigint() - start
        })))
      })
  }
})

export const renewalReport: Effect.Effect<string> = Effect.scoped(Effect.gen(function*() {
  const redis = yield* connect
  if (typeof redis === "string") return `renewal traffic: not measured: ${redis}`
  const calls: Calls = { count: 0, args: 0, nanos: 0n }
  const budget = yield* Budget.makeRedis({
    name: "renewal",
    tokenCap: Number.MAX_SAFE_INTEGER,
    usdCap: maxUsd,
    prefix,
    leaseTtl
  }).pipe(Effect.provideService(Redis.Redis, counting(redis, calls)), Effect.orDie)
  const open = yield* Scope.make()
  yield* Effect.forEach(Array.from({ length: holds }), () => budget.reserve(estimate), { concurrency: 64, discard: true })
    .pipe(Scope.provide(open), Effect.orDie)
  // From here until the holds close, the store sends nothing but renewals.
  Object.assign(calls, { count: 0, args: 0, nanos: 0n })
  const watched = Duration.times(leaseTtl, leases)
  yield* Effect.sleep(watched)
  const renewals = { ...calls }
  // Every hold still held, long after its first lease ran out: renewal works.
  const { tokensReserved } = yield* Effect.orDie(budget.snapshot)
  const held = tokensReserved / estimate.tokens
  yield* Scope.close(open, Exit.void)
  const perCall = renewals.count === 0 ? 0 : (renewals.args - 2 * renewals.count) / renewals.count
  const millisPerCall = renewals.count === 0 ? 0 : Number(renewals.nanos) / renewals.count / 1e6
  return `renewal traffic (${holds.toLocaleString("en-US")} holds open, lease ${Duration.format(leaseTtl)}, ` +
    `over ${Duration.format(watched)}): ${renewals.count} renew calls (every lease/3 would be ${leases * 3}), ` +
    `${Math.round(perCall).toLocaleString("en-US")} leases each, ${millisPerCall.toFixed(1)} ms each; ` +
    `${held.toLocaleString("en-US")} of ${holds.toLocaleString("en-US")} holds still held`
}))
