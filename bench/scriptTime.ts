/**
 * What our scripts cost Redis itself, with no client in the way: the
 * server's own time per call (`INFO commandstats`), on a redis-server
 * this report starts for itself (it resets the server's statistics and
 * flushes it between cases, which no one may do to a shared one).
 * `redis-benchmark` sends each case one call at a time: the least leased
 * hold (bench/redis.ts) for reference, then our `batch` script with one
 * record, one reserve, and batches of 64 of each (per operation). The
 * figures are printed below the table, and are how a change to the Lua is
 * judged: `npx tsx bench/scriptTime.ts` runs this report alone.
 */
import { NodeRedis } from "@effect/platform-node"
import { Context, Effect, Layer } from "effect"
import * as Redis from "effect/persistence/Redis"
import { pathToFileURL } from "node:url"
import { batchArguments } from "../src/internal/redis/batch.ts"
import type { Operation } from "../src/internal/redis/batch.ts"
import { batch, ensure } from "../src/internal/redis/scripts.ts"
import { maxUsd, usdToNanos } from "../src/index.ts"
import { ownRedis } from "../test/support/ownRedis.ts"
import { median } from "./harness.ts"
import { leastHold } from "./redis.ts"
import { evalsha, random, requestsPerSecond } from "./redisBenchmark.ts"
import { estimate } from "./workload.ts"

const rounds = 5
const tree = "{time}"
const chain = [`${tree}:n:time`]

interface Case {
  readonly name: string
  /** Operations a call runs: its time is given per operation. */
  readonly ops: number
  readonly calls: number
  readonly args: ReadonlyArray<string>
}

export const scriptTimeReport: Effect.Effect<string> = Effect.scoped(Effect.gen(function*() {
  const server = yield* ownRedis()
  const redis = yield* Layer.build(NodeRedis.layer({ url: server.url })).pipe(Effect.map(Context.get(Redis.Redis)))
  const nanos = usdToNanos(estimate.usd)
  const ops = (count: number, op: (i: number) => Operation) =>
    evalsha(
      redis,
      batch,
      ...batchArguments({ tree, leaseMillis: 30_000, keepMillis: 60_000, idKeepMillis: 86_400_000 }, Array.from({ length: count }, (_, i) => op(i)))
    )
  const record = (): Operation => ({ _tag: "Record", chain, tokens: estimate.tokens, nanos })
  // A fresh random id a hold: `redis-benchmark` writes one into each request.
  const reserve = (i: number): Operation => ({ _tag: "Reserve", chain, id: `${random}.${i}`, tokens: estimate.tokens, nanos })
  const cases: ReadonlyArray<Case> = [
    { name: "least leased hold script", ops: 1, calls: 20_000, args: yield* evalsha(redis, leastHold, tree, random) },
    { name: "record alone", ops: 1, calls: 20_000, args: yield* ops(1, record) },
    { name: "reserve alone", ops: 1, calls: 20_000, args: yield* ops(1, reserve) },
    { name: "64 records, per record", ops: 64, calls: 2_000, args: yield* ops(64, record) },
    { name: "64 reserves, per reserve", ops: 64, calls: 2_000, args: yield* ops(64, reserve) }
  ]
  /** Redis's microseconds per call of one case, from an empty server (its scripts stay loaded) with the budget open. */
  const measure = (c: Case) =>
    Effect.gen(function*() {
      yield* redis.send("FLUSHALL")
      yield* redis.eval(ensure)(chain, tree, Number.MAX_SAFE_INTEGER, usdToNanos(maxUsd), "", 0, "", true, "", -1, -1, 0, [])
      yield* redis.send("CONFIG", "RESETSTAT")
      yield* requestsPerSecond(c.args, { clients: 1, requests: c.calls }, server.url)
      const stats = yield* redis.send<string>("INFO", "commandstats")
      return Number(new RegExp(`cmdstat_evalsha:calls=\\d+,usec=\\d+,usec_per_call=([\\d.]+)`).exec(stats)?.[1] ?? NaN)
    })
  // Rounds interleave the cases, so a drift of the machine reaches each alike.
  const perRound: Array<ReadonlyArray<number>> = []
  for (let round = 0; round < rounds; round++) {
    perRound.push(yield* Effect.forEach(cases, measure))
  }
  const lines = cases.map((c, i) => {
    const micros = median(perRound.map((round) => round[i]!)) / c.ops
    return `  ${c.name.padEnd(26)} ${micros.toFixed(2).padStart(7)} µs`
  })
  return `Redis's own time per operation (INFO commandstats on a private redis-server; median of ${rounds} rounds):\n${
    lines.join("\n")
  }`
}).pipe(Effect.catch((why) => Effect.succeed(`Redis's own time per operation: not measured: ${why}`))))

if (import.meta.url === pathToFileURL(process.argv[1]!).href) {
  Effect.runPromise(scriptTimeReport).then(console.log)
}
