/**
 * The Redis store: our operations against a raw `EVALSHA` of a script that
 * does one HINCRBY, sent through the same `Redis` service, at 1 and 64 ops
 * in flight. Each of ours is one script round trip, so it is allowed 1.25x
 * the raw script's time per op (0.8x its throughput); a reserve + commit
 * cycle is two round trips, so 2.5x.
 */
import { NodeRedis } from "@effect/platform-node"
import { Context, Effect, Layer, References } from "effect"
import type { Scope } from "effect"
import * as Redis from "effect/persistence/Redis"
import { type BudgetService, maxUsd, type Reservation } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import type { Case } from "./case.ts"
import { timeLoop, timeOnce } from "./harness.ts"
import type { Plan } from "./runner.ts"
import { actual, estimate } from "./workload.ts"

export const url = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379"

/** Every key of this run starts so: no other run, and no test, reaches it. */
export const prefix = `bench:${process.pid}:`

/**
 * Many short rounds: a round trip's time drifts with the machine by tens
 * of percent within seconds, so each ratio is the median of 25 taken
 * against a floor measured moments apart. The Redis rows add ~30 s.
 */
export const redisPlan: Plan = { warmup: 2, rounds: 25 }

/**
 * Ops in flight, and ops per sample: ~50 ms of raw round trips at one in
 * flight, where each waits for the last, and ~60 ms at 64, where they
 * overlap.
 */
const levels: ReadonlyArray<Level> = [{ inFlight: 1, ops: 250 }, { inFlight: 64, ops: 3_000 }]

interface Level {
  readonly inFlight: number
  readonly ops: number
}

const stuckAfter = "30 seconds"

/**
 * The `Redis` service, or why there is none: the bench runs on without it.
 * This run's keys are deleted as the scope closes, before the client.
 */
export const connect: Effect.Effect<Redis.Redis["Service"] | string, never, Scope.Scope> = Layer.build(
  NodeRedis.layer({ url, socket: { connectTimeout: 2_000 } })
).pipe(
  // The client logs socket errors as warnings; a failed connection is
  // reported once, in the table, instead.
  Effect.provideService(References.MinimumLogLevel, "Error"),
  Effect.map(Context.get(Redis.Redis)),
  Effect.tap((redis) => Effect.addFinalizer(() => cleanUp(redis))),
  Effect.catch(({ cause }) =>
    Effect.succeed(`Redis does not answer at ${url}: ${cause instanceof Error && cause.message ? cause.message : cause}`)
  )
)

/** Deletes this run's keys: settlements would expire, but budgets would stay. */
const cleanUp = (redis: Redis.Redis["Service"]) =>
  Effect.gen(function*() {
    let cursor = "0"
    do {
      const [next, keys] = yield* redis.send<[string, Array<string>]>("SCAN", cursor, "MATCH", `${prefix}*`, "COUNT", "1000")
      if (keys.length > 0) yield* redis.send("UNLINK", ...keys)
      cursor = next
    } while (cursor !== "0")
  }).pipe(Effect.ignore)

/** The trivial script: one write, and nothing else a round trip could be charged for. */
export const raw = Redis.script((key: string) => [key, 1], {
  numberOfKeys: 1,
  lua: "return redis.call('HINCRBY', KEYS[1], 'n', ARGV[1])"
}).withReturnType<number>()

/**
 * The least a leased hold costs Redis, for reference: read one budget's
 * counters and caps, write what it holds, store the hold and its lease on
 * Redis's clock. No nesting, windows, events, waiters or batching; the
 * reply is one word. Our `reserve` does this and the rest.
 */
export const leastHold = Redis.script(
  (tree: string, id: string) => [`${tree}:n:b`, tree, id, 1200, 3600000, 30000],
  {
    numberOfKeys: 1,
    lua: `
local v = redis.call('HMGET', KEYS[1], 'tu', 'nu', 'tr', 'nr', 'tc', 'nc', 'gen')
local t, n = tonumber(ARGV[3]), tonumber(ARGV[4])
local tu, nu, tr, nr = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0, tonumber(v[4]) or 0
local tc, nc = tonumber(v[5]) or -1, tonumber(v[6]) or -1
if (tc >= 0 and tu + tr + t > tc) or (nc >= 0 and nu + nr + n > nc) then return 'x' end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'tr', string.format('%.0f', tr + t), 'nr', string.format('%.0f', nr + n))
redis.call('SET', ARGV[1] .. ':h:' .. ARGV[2], 'h ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. (v[7] or '0') .. ' b')
redis.call('ZADD', ARGV[1] .. ':leases', string.format('%.0f', now[1] * 1000 + math.floor(now[2] / 1000) + ARGV[5]), ARGV[2])
return 'ok'`
  }
).withReturnType<string>()

export const names = {
  raw: (n: number) => `redis: raw EVALSHA (HINCRBY), ${n} in flight`,
  least: (n: number) => `redis: least leased hold script, ${n} in flight`,
  record: (n: number) => `redis: record, ${n} in flight`,
  reserve: (n: number) => `redis: reserve, ${n} in flight`,
  commit: (n: number) => `redis: commit, ${n} in flight`,
  cycle: (n: number) => `redis: scoped reserve + commit, ${n} in flight`,
  ratedRecord: (n: number) => `redis: record with a rate, ${n} in flight`,
  ratedCycle: (n: number) => `redis: scoped reserve + commit with a rate, ${n} in flight`
} as const

/** Nanoseconds per op of `level.ops` runs of `op(i)`, `level.inFlight` at a time. */
const timeAt = <E, R>(level: Level, op: (i: number) => Effect.Effect<unknown, E, R>): Effect.Effect<number, E, R> =>
  level.inFlight === 1
    ? Effect.suspend(() => {
      let i = 0
      return timeLoop(level.ops, () => op(i++))
    })
    : timeOnce(level.ops, Effect.forEach(indices(level.ops), op, { concurrency: level.inFlight, discard: true }))

const indices = (ops: number) => Array.from({ length: ops }, (_, i) => i)

/** The untimed half of the reserve and commit samples: as fast as it goes. */
const quickly = (level: Level): Level => ({ ...level, inFlight: 64 })

/** Holds on `level.ops` reservations, in the caller's scope. */
const holdAll = (budget: BudgetService, level: Level) =>
  Effect.suspend(() => {
    const holds = new Array<Reservation>(level.ops)
    const hold = (i: number) => Effect.map(budget.reserve(estimate), (r) => void (holds[i] = r))
    return Effect.map(timeAt(level, hold), (ns) => ({ ns, holds }))
  })

const commitAll = (holds: ReadonlyArray<Reservation>, level: Level) => timeAt(level, (i) => holds[i]!.commit(actual))

/**
 * The cases at one concurrency. With 64 in flight each is judged against
 * the raw script; one alone, against the least leased hold: the raw
 * one-command script is no floor a leased hold can reach alone (see
 * docs/performance.md#redis).
 */
const casesAt = (
  redis: Redis.Redis["Service"],
  budget: BudgetService,
  rated: BudgetService,
  level: Level
): ReadonlyArray<Case> => {
  const n = level.inFlight
  let samples = 0
  const rawKey = `${prefix}{raw}`
  const versus = (target: number) => ({ case: n === 1 ? names.least(n) : names.raw(n), target })
  return [
    { name: names.raw(n), sample: timeAt(level, () => redis.eval(raw)(rawKey)) },
    {
      name: names.least(n),
      sample: Effect.suspend(() => {
        const sample = ++samples
        return timeAt(level, (i) => redis.eval(leastHold)(`${prefix}{least}`, `${n}-${sample}-${i}`))
      }),
      versus: { case: names.raw(n) }
    },
    { name: names.record(n), sample: timeAt(level, () => budget.record(estimate)), versus: versus(1.25) },
    {
      name: names.reserve(n),
      // Committed once timed, so every sample starts with no holds.
      sample: Effect.scoped(
        Effect.flatMap(holdAll(budget, level), ({ holds, ns }) => Effect.as(commitAll(holds, quickly(level)), ns))
      ),
      versus: versus(1.25)
    },
    {
      name: names.commit(n),
      sample: Effect.scoped(Effect.flatMap(holdAll(budget, quickly(level)), ({ holds }) => commitAll(holds, level))),
      versus: versus(1.25)
    },
    {
      name: names.cycle(n),
      sample: timeAt(level, () => Effect.scoped(Effect.flatMap(budget.reserve(estimate), (r) => r.commit(actual)))),
      versus: versus(2.5)
    },
    // A rate that admits everything: what keeping it costs, beside the same operation without one.
    {
      name: names.ratedRecord(n),
      sample: timeAt(level, () => rated.record(estimate)),
      versus: { case: names.record(n), target: 1.15 }
    },
    {
      name: names.ratedCycle(n),
      sample: timeAt(level, () => Effect.scoped(Effect.flatMap(rated.reserve(estimate), (r) => r.commit(actual)))),
      versus: { case: names.cycle(n), target: 1.15 }
    }
  ]
}

// A Redis that stops answering must fail its case, not hang the bench.
const guarded = (c: Case): Case => ({
  ...c,
  sample: Effect.timeoutOrElse(c.sample, {
    duration: stuckAfter,
    orElse: () => Effect.fail(new Error(`no answer from Redis at ${url} within ${stuckAfter}`))
  })
})

export const redisCases: Effect.Effect<ReadonlyArray<Case>, never, Scope.Scope> = Effect.gen(function*() {
  const redis = yield* connect
  if (typeof redis === "string") {
    // Every row still shows, failed with the reason.
    const unavailable = Effect.fail(new Error(redis))
    return levels.flatMap((level) =>
      Object.values(names).map((name): Case => ({ name: name(level.inFlight), sample: unavailable }))
    )
  }
  const budget = yield* RedisBudget.make({ name: "bench", tokenCap: Number.MAX_SAFE_INTEGER, usdCap: maxUsd }, { prefix }).pipe(
    Effect.provideService(Redis.Redis, redis),
    Effect.orDie
  )
  const rated = yield* RedisBudget.make({
    name: "bench-rated",
    tokenCap: Number.MAX_SAFE_INTEGER,
    usdCap: maxUsd,
    rate: { tokens: 1e15, requests: 1e12, per: "1 minute" }
  }, { prefix }).pipe(Effect.provideService(Redis.Redis, redis), Effect.orDie)
  return levels.flatMap((level) => casesAt(redis, budget, rated, level)).map(guarded)
})
