/**
 * Where a Redis operation's time goes: the CPU this process and the Redis
 * server each spend per operation, 64 in flight, for the raw one-line
 * script and for ours. On a machine where client and server share the
 * cores, throughput follows their sum. Redis's side is read from
 * `INFO cpu`, so other clients of the same server would add to it. The
 * figures are printed below the table.
 */
import { Effect } from "effect"
import * as Redis from "effect/persistence/Redis"
import { maxUsd } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { connect, prefix, raw } from "./redis.ts"
import { actual, estimate } from "./workload.ts"

const ops = 20_000
const inFlight = 64

/** Microseconds of CPU the Redis server has used, user and system. */
const serverMicros = (redis: Redis.Redis["Service"]) =>
  Effect.map(redis.send<string>("INFO", "cpu"), (info) => {
    const field = (name: string) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)?.[1] ?? 0)
    return (field("used_cpu_user") + field("used_cpu_sys")) * 1e6
  })

/** This process's and the server's CPU per op of `ops` runs of `op`, after a warm-up. */
const split = <E>(redis: Redis.Redis["Service"], op: Effect.Effect<unknown, E>) =>
  Effect.gen(function*() {
    const run = (n: number) => Effect.forEach(Array.from({ length: n }), () => op, { concurrency: inFlight, discard: true })
    yield* run(ops / 10)
    const server = yield* serverMicros(redis)
    const client = process.cpuUsage()
    yield* run(ops)
    const { user, system } = process.cpuUsage(client)
    const serverPerOp = ((yield* serverMicros(redis)) - server) / ops
    return `${((user + system) / ops).toFixed(0)} µs here + ${serverPerOp.toFixed(0)} µs in Redis`
  })

export const redisCpuReport: Effect.Effect<string> = Effect.scoped(Effect.gen(function*() {
  const redis = yield* connect
  if (typeof redis === "string") return `CPU per Redis op: not measured: ${redis}`
  const budget = yield* RedisBudget.make({ name: "cpu", tokenCap: Number.MAX_SAFE_INTEGER, usdCap: maxUsd }, { prefix })
    .pipe(Effect.provideService(Redis.Redis, redis), Effect.orDie)
  const rows = [
    ["raw EVALSHA (HINCRBY)", yield* split(redis, redis.eval(raw)(`${prefix}{cpu-raw}`))],
    ["record", yield* split(redis, budget.record(estimate))],
    ["scoped reserve + commit", yield* split(redis, Effect.scoped(Effect.flatMap(budget.reserve(estimate), (r) => r.commit(actual))))]
  ]
  return `CPU per Redis op, ${inFlight} in flight:\n${rows.map(([name, figures]) => `  ${name!.padEnd(24)} ${figures}`).join("\n")}`
}).pipe(Effect.orDie))
