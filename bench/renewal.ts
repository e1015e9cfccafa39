/**
 * What open holds cost Redis while they wait: the store renews every lease
 * of a process in one script call every lease/3, however many holds it has.
 * With 1,000 holds open over two leases, the calls are counted here, by a
 * `Redis` service that counts the script calls made through it: unlike
 * `INFO commandstats`, other clients of the same Redis cannot skew the
 * count. The figure is printed below the table.
 */
import { Duration, Effect, Exit, Scope } from "effect"
import * as Redis from "effect/persistence/Redis"
import { maxUsd } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { connect, prefix } from "./redis.ts"
import { estimate } from "./workload.ts"

const holds = 1_000
const leaseTtl = Duration.seconds(3)
const leases = 2

interface Calls {
  count: number
  /** Arguments sent, keys included: a renewal sends one per lease, plus four. */
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
        return Effect.ensuring(
          run(...params),
          Effect.sync(() => {
            calls.count++
            calls.args += script.params(...params).length
            calls.nanos += process.hrtime.bigint() - start
          })
        )
      })
  }
})

export const renewalReport: Effect.Effect<string> = Effect.scoped(Effect.gen(function*() {
  const redis = yield* connect
  if (typeof redis === "string") return `renewal traffic: not measured: ${redis}`
  const calls: Calls = { count: 0, args: 0, nanos: 0n }
  const budget = yield* RedisBudget.make({ name: "renewal", tokenCap: Number.MAX_SAFE_INTEGER, usdCap: maxUsd }, { prefix, leaseTtl })
    .pipe(Effect.provideService(Redis.Redis, counting(redis, calls)), Effect.orDie)
  const open = yield* Scope.make()
  yield* Effect.forEach(Array.from({ length: holds }), () => budget.reserve(estimate), { concurrency: 64, discard: true })
    .pipe(Scope.provide(open), Effect.orDie)
  // Until the holds close, the store sends nothing but renewals.
  const before = { ...calls }
  const watched = Duration.times(leaseTtl, leases)
  yield* Effect.sleep(watched)
  const count = calls.count - before.count
  const leasesPerCall = count === 0 ? 0 : (calls.args - before.args) / count - 4
  const millisPerCall = count === 0 ? 0 : Number(calls.nanos - before.nanos) / count / 1e6
  // Every hold still held, long after its first lease would have run out.
  const held = (yield* Effect.orDie(budget.snapshot)).tokensReserved / estimate.tokens
  yield* Scope.close(open, Exit.void)
  return `renewal traffic (${holds.toLocaleString("en-US")} holds open, lease ${Duration.format(leaseTtl)}, ` +
    `over ${Duration.format(watched)}): ${count} renew calls (one per lease/3 would be ${leases * 3}), ` +
    `${Math.round(leasesPerCall).toLocaleString("en-US")} leases each, ${millisPerCall.toFixed(1)} ms a round trip; ` +
    `${held.toLocaleString("en-US")} of ${holds.toLocaleString("en-US")} holds still held`
}))
