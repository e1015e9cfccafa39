/**
 * The Redis Cluster the cluster tests run against: REDIS_CLUSTER_NODES, a
 * comma-separated list of `host:port` (`bash scripts/redis-cluster.sh
 * start` starts one and prints it). In CI a missing cluster fails the run;
 * elsewhere the cluster tests are skipped, with a notice.
 */
import { afterAll } from "@effect/vitest"
import { Clock, Context, Effect, Layer } from "effect"
import type { Scope } from "effect"
import * as Redis from "effect/persistence/Redis"
import { createClient } from "redis"
import type { BudgetStore, InvalidUsage } from "../../src/index.ts"
import { NodeRedisCluster, RedisBudget } from "../../src/redis.ts"
import { counting, settleThrough } from "./inFlight.ts"

export const nodes: ReadonlyArray<string> = (process.env["REDIS_CLUSTER_NODES"] ?? "")
  .split(",").map((node) => node.trim()).filter((node) => node !== "")

export const rootNodes = nodes.map((node) => ({ url: `redis://${node}` }))

/** A plain client to one node, for checks the cluster client hides. */
export const nodeClient = async (address: string) => {
  const client = createClient({ url: `redis://${address}`, socket: { connectTimeout: 1000, reconnectStrategy: false } })
  client.on("error", () => {})
  await client.connect()
  return client
}

const state = async (): Promise<string | undefined> => {
  try {
    const client = await nodeClient(nodes[0]!)
    const info = await client.sendCommand(["CLUSTER", "INFO"])
    await client.close()
    return /cluster_state:ok/.test(String(info)) ? undefined : "its state is not ok"
  } catch (error) {
    return String(error)
  }
}

const problem = nodes.length === 0 ? "REDIS_CLUSTER_NODES is not set" : await state()
export const available = problem === undefined

if (!available) {
  if (process.env["CI"] || nodes.length > 0) {
    throw new Error(`No Redis Cluster at REDIS_CLUSTER_NODES (${problem}): the cluster tests cannot run`)
  }
  console.warn(
    `\n  ${problem}: skipping the Redis Cluster tests (bash scripts/redis-cluster.sh start, then set it)\n`
  )
}

// Built with the host's `Clock`, as RedisLive is (support/redis.ts).
export const ClusterLive: Layer.Layer<Redis.Redis | NodeRedisCluster.NodeRedisCluster> = Layer.orDie(
  NodeRedisCluster.layer({ rootNodes })
).pipe(Layer.provide(Layer.succeed(Clock.Clock, Clock.Clock.defaultValue())))

/** Every key the cluster tests of this process write starts with it. */
export const processPrefix = `test:${process.pid}:`

let unique = 0

/** A key prefix no other test, file or process uses. */
export const testPrefix = (what: string): string => `${processPrefix}${what}:${Date.now()}:${unique++}:`

/** The masters, as `host:port`, each with the slot ranges it owns. */
export const masters = async (): Promise<ReadonlyArray<{ address: string; slots: Array<[number, number]> }>> => {
  const client = await nodeClient(nodes[0]!)
  const ranges = await client.sendCommand(["CLUSTER", "SLOTS"]) as Array<[number, number, [string, number]]>
  await client.close()
  const byAddress = new Map<string, Array<[number, number]>>()
  for (const [from, to, [host, port]] of ranges) {
    const address = `${host}:${port}`
    byAddress.set(address, [...(byAddress.get(address) ?? []), [from, to]])
  }
  return [...byAddress].map(([address, slots]) => ({ address, slots }))
}

/** The master that owns `key`'s slot (CLUSTER KEYSLOT). */
export const ownerOf = async (key: string): Promise<string> => {
  const client = await nodeClient(nodes[0]!)
  const slot = Number(await client.sendCommand(["CLUSTER", "KEYSLOT", key]))
  await client.close()
  const owner = (await masters()).find((m) => m.slots.some(([from, to]) => from <= slot && slot <= to))
  return owner!.address
}

/** The keys matching `pattern` on each master. */
export const keysByMaster = async (pattern: string): Promise<ReadonlyMap<string, ReadonlyArray<string>>> => {
  const result = new Map<string, Array<string>>()
  for (const { address } of await masters()) {
    const client = await nodeClient(address)
    const keys: Array<string> = []
    for await (const batch of client.scanIterator({ MATCH: pattern, COUNT: 1000 })) keys.push(...batch)
    await client.close()
    result.set(address, keys)
  }
  return result
}

// Deletes this process's keys on every master, one key a command (keys of
// different slots cannot share one).
if (available) {
  afterAll(async () => {
    for (const [address, keys] of await keysByMaster(`${processPrefix}*`)) {
      const client = await nodeClient(address)
      await Promise.all(keys.map((key) => client.unlink(key)))
      await client.close()
    }
  })
}

/**
 * A Redis store on the cluster of its own: a cluster client, and keys no
 * other test uses, kept as long as the caller's scope. Its commands are
 * counted while in flight, for `settleCluster`.
 */
export const makeClusterStore = (
  options: Omit<RedisBudget.StoreOptions, "prefix"> = {}
): Effect.Effect<BudgetStore.BudgetStore["Service"], InvalidUsage, Scope.Scope> =>
  Effect.flatMap(
    Layer.build(ClusterLive),
    (redis) =>
      RedisBudget.makeStore({ ...options, prefix: testPrefix("budget") }).pipe(
        Effect.provideService(Redis.Redis, counting(Context.get(redis, Redis.Redis)))
      )
  )

/**
 * A barrier through the cluster's pub/sub: a marker published on every
 * master, awaited by a subscriber on every node. The cluster forwards a
 * master's messages to each node in order, so once every node has every
 * master's marker, each node has passed on what the scripts published
 * before it, whichever node a budget's subscription is on.
 */
const makeBarrier = async (): Promise<() => Promise<void>> => {
  const channel = `${processPrefix}settle`
  const addresses = (await masters()).map((m) => m.address)
  const received = new Set<string>()
  const waiters = new Set<() => void>()
  const clients = await Promise.all(addresses.map(async (address) => {
    const publisher = await nodeClient(address)
    const subscriber = await nodeClient(address)
    await subscriber.subscribe(channel, (message) => {
      received.add(`${address}|${message}`)
      waiters.forEach((check) => check())
    })
    publisher.unref()
    subscriber.unref()
    return publisher
  }))
  let round = 0
  return async () => {
    const marker = `${round++}`
    const expected = addresses.flatMap((to) => addresses.map((from) => `${to}|${marker}:${from}`))
    const arrived = new Promise<void>((resolve) => {
      const check = () => {
        if (!expected.every((entry) => received.has(entry))) return
        expected.forEach((entry) => received.delete(entry))
        waiters.delete(check)
        resolve()
      }
      waiters.add(check)
    })
    await Promise.all(clients.map((publisher, i) => publisher.publish(channel, `${marker}:${addresses[i]}`)))
    await arrived
  }
}

let barrier: Promise<() => Promise<void>> | undefined

/**
 * Waits for round trips and pub/sub messages to land (support/inFlight.ts),
 * for the stores of `makeClusterStore`, with the barrier through every
 * node's pub/sub.
 */
export const settleCluster: Effect.Effect<void> = settleThrough(
  Effect.promise(async () => {
    barrier ??= makeBarrier()
    await (await barrier)()
  })
)
