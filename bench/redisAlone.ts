/**
 * One operation alone, with no Node client in the way: `redis-benchmark`
 * (a C client that does next to nothing per request) sends, one at a time,
 * the raw script, the least leased hold, and our own `batch` script with
 * the arguments of a record and of a reserve that go alone. Whatever these
 * ratios are over 1.25x, no client could win back: it is what the scripts
 * and the machine cost. Skipped where `redis-benchmark` is not installed
 * (Debian: `redis-tools`). The figures are printed below the table.
 */
import { Effect } from "effect"
import { batchArguments } from "../src/internal/redis/batch.ts"
import type { Operation } from "../src/internal/redis/batch.ts"
import { batch } from "../src/internal/redis/scripts.ts"
import { usdToNanos } from "../src/Usage.ts"
import { median } from "./harness.ts"
import { connect, leastHold, prefix, raw } from "./redis.ts"
import { evalsha, random, requestsPerSecond } from "./redisBenchmark.ts"
import { estimate } from "./workload.ts"

/** One request in flight at a time. */
const load = { clients: 1, requests: 5_000 }
const rounds = 11

export const redisAloneReport: Effect.Effect<string> = Effect.scoped(Effect.gen(function*() {
  const redis = yield* connect
  if (typeof redis === "string") return `one operation alone from a C client: not measured: ${redis}`
  const tree = `${prefix}{alone}`
  const chain = [`${tree}:n:alone`]
  const alone = (operation: Operation) =>
    evalsha(redis, batch, ...batchArguments({ tree, leaseMillis: 30_000, keepMillis: 60_000, idKeepMillis: 86_400_000 }, [operation]))
  const nanos = usdToNanos(estimate.usd)
  const cases: ReadonlyArray<readonly [string, ReadonlyArray<string>]> = [
    ["raw EVALSHA (HINCRBY)", yield* evalsha(redis, raw, `${prefix}{alone-raw}`)],
    ["least leased hold script", yield* evalsha(redis, leastHold, `${prefix}{alone-least}`, random)],
    ["our script, a record", yield* alone({ _tag: "Record", chain, tokens: estimate.tokens, nanos })],
    ["our script, a reserve", yield* alone({ _tag: "Reserve", chain, id: random, tokens: estimate.tokens, nanos })]
  ]
  // Rounds interleave the cases, so a drift of the machine reaches each alike.
  const perRound: Array<ReadonlyArray<number>> = []
  for (let round = 0; round < rounds; round++) {
    perRound.push(yield* Effect.forEach(cases, ([, args]) => Effect.map(requestsPerSecond(args, load), (rps) => 1e6 / rps)))
  }
  const lines = cases.map(([name], i) => {
    const micros = median(perRound.map((round) => round[i]!))
    const ratio = i === 0 ? "" : `${median(perRound.map((round) => round[i]! / round[0]!)).toFixed(2)}x`
    return `  ${name.padEnd(26)} ${micros.toFixed(0).padStart(4)} µs  ${ratio}`.trimEnd()
  })
  return `One operation alone from a C client (redis-benchmark, 1 in flight), µs per op and ratio to the raw script:\n${
    lines.join("\n")
  }`
}).pipe(Effect.catch((why) => Effect.succeed(`one operation alone from a C client: not measured: ${why}`))))
