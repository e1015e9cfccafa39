/**
 * The Redis the tests run against: 127.0.0.1:6379, or REDIS_URL. In CI a
 * missing Redis fails the run; elsewhere the Redis tests are skipped, with a
 * notice.
 */
import { NodeRedis } from "@effect/platform-node"
import { afterAll } from "@effect/vitest"
import { Clock, Context, Effect, Layer } from "effect"
import type { Duration, Scope } from "effect"
import * as Redis from "effect/persistence/Redis"
import { createClient } from "redis"
import type { BudgetOptions, BudgetService, BudgetStore, InvalidUsage } from "../../src/index.ts"
import { RedisBudget } from "../../src/redis.ts"
import { BudgetStoreContract } from "../../src/testing.ts"
import * as Batch from "../../src/internal/redis/batch.ts"
import * as Scripts from "../../src/internal/redis/scripts.ts"
import { counting, settleThrough } from "./inFlight.ts"

export const url = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379"

const answers = async (): Promise<boolean> => {
  const client = createClient({ url, socket: { connectTimeout: 1000, reconnectStrategy: false } })
  client.on("error", () => {})
  try {
    await client.connect()
    await client.ping()
    await client.close()
    return true
  } catch {
    return false
  }
}

export const available = await answers()

if (!available) {
  if (process.env["CI"]) throw new Error(`Redis does not answer at ${url}: the Redis tests cannot run`)
  console.warn(`\n  Redis does not answer at ${url}: skipping the Redis tests (start one to run them)\n`)
}

// The client's connection pool keeps its idle timers with `Clock`: built
// with the host's, so a test's `TestClock` does not hold them (and warn).
export const RedisLive: Layer.Layer<Redis.Redis> = Layer.orDie(NodeRedis.layer({ url })).pipe(
  Layer.provide(Layer.succeed(Clock.Clock, Clock.Clock.defaultValue()))
)

/** Every key the tests of this process write starts with it. */
const processPrefix = `test:${process.pid}:`

let unique = 0

/** A key prefix no other test, file or process uses: `test:<pid>:<what>:<time>:<n>:`. */
export const testPrefix = (what: string): string => `${processPrefix}${what}:${Date.now()}:${unique++}:`

/** Deletes every key that matches `pattern`. */
const unlinkAll = async (pattern: string): Promise<void> => {
  const client = createClient({ url })
  await client.connect()
  for await (const keys of client.scanIterator({ MATCH: pattern, COUNT: 1000 })) {
    if (keys.length > 0) await client.unlink(keys)
  }
  await client.close()
}

// Budgets have no TTL, nor do holds left open until a request reaps them:
// without this, each run would leave thousands of keys in the Redis it ran
// against. A file's tests run one after another in their process.
if (available) afterAll(() => unlinkAll(`${processPrefix}*`))

/**
 * A Redis store of its own: a client, and keys no other test uses. The
 * client lives as long as the caller's scope, like the budgets opened on it.
 * Its commands are counted while in flight, for `settleRedis`.
 */
export const makeRedisStore = (
  options: Omit<RedisBudget.StoreOptions, "prefix"> = {}
): Effect.Effect<BudgetStore.BudgetStore["Service"], InvalidUsage, Scope.Scope> =>
  Effect.flatMap(
    Layer.build(RedisLive),
    (redis) =>
      RedisBudget.makeStore({ ...options, prefix: testPrefix("budget") }).pipe(
        Effect.provideService(Redis.Redis, counting(Context.get(redis, Redis.Redis)))
      )
  )

/** A fresh budget tree in Redis, under keys no other test uses. */
export const makeRedisBudget = (
  options: BudgetOptions & {
    readonly leaseTtl?: Duration.Input | undefined
    readonly timeout?: Duration.Input | undefined
  }
): Effect.Effect<BudgetService, unknown, Scope.Scope> => {
  const { leaseTtl, timeout, ...budget } = options
  return BudgetStoreContract.makeFromStore(makeRedisStore({ leaseTtl, timeout }))(budget)
}

/**
 * Runs `operations` on the tree `tree` as one batch script, straight to
 * Redis, as a process's store sends them (its holds leased `leaseMillis`):
 * its replies, in order.
 */
export const runBatch = (
  redis: Redis.Redis["Service"],
  tree: string,
  operations: ReadonlyArray<Batch.Operation>,
  leaseMillis = 30_000
) =>
  redis.eval(Scripts.batch)(
    ...Batch.batchArguments({ tree, leaseMillis, keepMillis: 60_000, idKeepMillis: 86_400_000 }, operations)
  )

/** A marker through pub/sub: published, then awaited on a subscription of this process's own. */
const makeBarrier = async (): Promise<() => Promise<void>> => {
  const channel = `${processPrefix}settle`
  const publisher = createClient({ url })
  const subscriber = publisher.duplicate()
  for (const client of [publisher, subscriber]) {
    client.on("error", () => {})
    await client.connect()
    client.unref()
  }
  const arrivals = new Map<string, () => void>()
  await subscriber.subscribe(channel, (marker) => arrivals.get(marker)?.())
  let round = 0
  return async () => {
    const marker = String(round++)
    const arrived = new Promise<void>((resolve) => arrivals.set(marker, resolve))
    await publisher.publish(channel, marker)
    await arrived
    arrivals.delete(marker)
  }
}

let barrier: Promise<() => Promise<void>> | undefined

/**
 * Waits for Redis round trips and pub/sub messages to land (support/inFlight.ts),
 * for the stores of `makeRedisStore`: a test's view of what was granted does
 * not race its replies.
 */
export const settleRedis: Effect.Effect<void> = settleThrough(
  Effect.promise(async () => {
    barrier ??= makeBarrier()
    await (await barrier)()
  })
)
