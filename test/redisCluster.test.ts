/**
 * The Redis store on a real Redis Cluster (REDIS_CLUSTER_NODES; `bash
 * scripts/redis-cluster.sh start` starts one): why a single-node client is
 * not enough, `NodeRedisCluster` itself, the contract suite on it, trees on
 * several masters, and several processes sharing one budget.
 */
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer } from "effect"
import * as Redis from "effect/persistence/Redis"
import { NodeRedisCluster, RedisBudget } from "../src/redis.ts"
import { BudgetStoreContract } from "../src/testing.ts"
import { Ledger } from "../src/index.ts"
import { collectingSink } from "./support/ledgerSink.ts"
import {
  available,
  ClusterLive,
  keysByMaster,
  makeClusterStore,
  masters,
  nodeClient,
  nodes,
  ownerOf,
  processPrefix,
  settleCluster,
  testPrefix
} from "./support/redisCluster.ts"
import { eventually } from "./support/poll.ts"
import { fleetOnSharedBudget, worker } from "./support/worker.ts"

const cluster = {
  name: "the Redis store on a Redis Cluster",
  make: BudgetStoreContract.makeFromStore(makeClusterStore()),
  settle: settleCluster,
  drainWaiters: 2_000,
  smallCharges: 100_000
}

/** A tree's keys all carry the hash tag of its root name. */
const slotKey = (root: string) => `x{${root}}`

/** A root name whose tree lives on each master, in the masters' order. */
const rootsOnEveryMaster = Effect.promise(async () => {
  const all = await masters()
  const roots = new Map<string, string>()
  for (let i = 0; roots.size < all.length; i++) {
    const owner = await ownerOf(slotKey(`tree-${i}`))
    if (!roots.has(owner)) roots.set(owner, `tree-${i}`)
  }
  return all.map(({ address }) => ({ address, root: roots.get(address)! }))
})

const clusterRedis = Effect.map(Layer.build(ClusterLive), Context.get(Redis.Redis))

describe.runIf(available)("Redis Cluster", () => {
  it.effect("NodeRedis pointed at one node reaches only the trees whose slot it owns: the others fail with MOVED", () =>
    Effect.gen(function*() {
      const [here, elsewhere] = yield* rootsOnEveryMaster
      const prefix = testPrefix("moved")
      const single = yield* Layer.build(Layer.orDie(NodeRedis.layer({ url: `redis://${here!.address}` })))
      const own = yield* RedisBudget.make({ name: here!.root, tokenCap: 100 }, { prefix }).pipe(Effect.provide(single))
      yield* own.record({ tokens: 10 })
      const error = yield* Effect.flip(
        RedisBudget.make({ name: elsewhere!.root, tokenCap: 100 }, { prefix }).pipe(Effect.provide(single))
      )
      assert.strictEqual(error._tag, "BudgetUnavailable")
      assert.include(error.message, "MOVED")
      // The same tree through the cluster client: routed to its master.
      const routed = yield* RedisBudget.make({ name: elsewhere!.root, tokenCap: 100 }, { prefix }).pipe(
        Effect.provide(yield* Layer.build(ClusterLive))
      )
      yield* routed.record({ tokens: 10 })
      assert.strictEqual((yield* routed.snapshot).tokensUsed, 10)
    }))

  it.effect("a tree on each master works, and all of its keys live on the master of its hash tag", () =>
    Effect.gen(function*() {
      const trees = yield* rootsOnEveryMaster
      assert.isAtLeast(trees.length, 3, "a 3-master cluster")
      const prefix = testPrefix("spread")
      const redis = yield* Layer.build(ClusterLive)
      for (const { root } of trees) {
        const budget = yield* RedisBudget.make({ name: root, tokenCap: 100, usdCap: 1 }, { prefix }).pipe(
          Effect.provide(redis)
        )
        const child = yield* budget.child("agent", { tokenCap: 50 })
        yield* child.record({ tokens: 10, usd: 0.1 })
        yield* Effect.scoped(Effect.flatMap(child.reserve({ tokens: 20 }), (hold) => hold.commit({ tokens: 15 })))
        const snap = yield* budget.snapshot
        assert.deepStrictEqual([snap.tokensUsed, snap.tokensReserved, snap.usdUsed], [25, 0, 0.1])
      }
      const keys = yield* Effect.promise(() => keysByMaster(`${prefix}*`))
      for (const { address, root } of trees) {
        const here = keys.get(address) ?? []
        assert.isNotEmpty(here, `keys on ${address}`)
        assert.isTrue(here.every((key) => key.startsWith(`${prefix}{${root}}`)), `only ${root}'s keys on ${address}`)
      }
    }))

  it.effect("scripts flushed from every master are loaded again on NOSCRIPT", () =>
    Effect.gen(function*() {
      const budget = yield* cluster.make({ name: "flushed", tokenCap: 100 })
      yield* budget.record({ tokens: 10 })
      yield* Effect.promise(async () => {
        for (const { address } of await masters()) {
          const client = await nodeClient(address)
          await client.scriptFlush()
          await client.close()
        }
      })
      yield* budget.record({ tokens: 10 })
      yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 5 }), (hold) => hold.commit()))
      assert.strictEqual((yield* budget.snapshot).tokensUsed, 25)
    }))

  it.effect("send reaches the master of its first key, on the shared client and on a reserved connection", () =>
    Effect.gen(function*() {
      const redis = yield* clusterRedis
      const prefix = testPrefix("send")
      const trees = yield* rootsOnEveryMaster
      for (const { root } of trees) {
        const key = `${prefix}{${root}}:k`
        yield* redis.send("SET", key, root)
        assert.strictEqual(yield* redis.send("GET", key), root)
      }
      assert.strictEqual(yield* redis.send("PING"), "PONG")
      yield* Effect.scoped(Effect.gen(function*() {
        const connection = yield* redis.reserve
        const list = `${prefix}{${trees[1]!.root}}:list`
        assert.isNull(yield* connection.send("BLPOP", list, "0.05"))
        yield* redis.send("RPUSH", list, "a")
        assert.deepStrictEqual(yield* connection.send("BLPOP", list, "1"), [list, "a"])
      }))
    }))

  it.effect("the layer fails with RedisError when no root node answers", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(Layer.build(NodeRedisCluster.layer({ rootNodes: [{ url: "redis://127.0.0.1:1" }] })))
      assert.strictEqual(error._tag, "RedisError")
      assert.isDefined(error.cause)
    }))

  BudgetStoreContract.contract(cluster)
  BudgetStoreContract.contract(BudgetStoreContract.grandchild(cluster))

  describe("several processes on one budget", () => {
    const workerEnv = { WORKER_REDIS_CLUSTER_NODES: nodes.join(",") }
    const sharedBudget = (prefix: string) =>
      Effect.flatMap(
        Layer.build(ClusterLive),
        (redis) => RedisBudget.make({ name: "shared", tokenCap: 200_000, usdCap: 0.2 }, { prefix }).pipe(Effect.provide(redis))
      )

    it.live("4 processes x 250 fibers: never past a cap, totals exact to the nano-dollar", () =>
      Effect.gen(function*() {
        const prefix = testPrefix("procs")
        const budget = yield* sharedBudget(prefix)
        yield* fleetOnSharedBudget(budget, prefix, workerEnv)
      }), 180_000)

    it.live("a waiter in one process is woken by a release in another, through the cluster's pub/sub", () =>
      Effect.gen(function*() {
        const prefix = testPrefix("wake")
        const budget = yield* sharedBudget(prefix)
        const hold = yield* budget.reserve({ tokens: 200_000 })
        const { child, firstLine } = worker(["wait", prefix, "shared", "0", "50000"], workerEnv)
        yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
        const woken = yield* Effect.forkChild(Effect.promise(() => firstLine))
        // Waiting: its ticket is in the budget's line (as test/redisWaiting.test.ts reads it).
        const redis = yield* clusterRedis
        yield* eventually(
          "the worker waits",
          Effect.map(redis.send<string>("ZCARD", `${prefix}{shared}:q:shared`), (n) => Number(n) === 1),
          { within: "20 seconds" }
        )
        assert.isUndefined(woken.pollUnsafe(), "no room yet")
        yield* hold.release
        // far sooner than the 30-second lease that bounds a missed message
        const printed = yield* Fiber.join(woken).pipe(Effect.timeout("5 seconds"))
        assert.deepStrictEqual(JSON.parse(printed), { holding: 1 })
        assert.strictEqual((yield* budget.snapshot).tokensReserved, 50_000)
      }), 60_000)
  })

  it.effect("this run's trees live on more than one master", () =>
    Effect.gen(function*() {
      const keys = yield* Effect.promise(() => keysByMaster(`${processPrefix}*`))
      const holding = [...keys].filter(([, list]) => list.length > 0).map(([address]) => address)
      assert.isAtLeast(holding.length, 2, `masters holding this run's keys: ${holding.join(", ")}`)
    }))

  it.live("the ledger on a cluster: each charge's entry is written in its tree's slot and drained once", () =>
    Effect.gen(function*() {
      const { sink, state } = yield* collectingSink()
      const trees = yield* rootsOnEveryMaster
      for (const { root } of trees) {
        const budget = yield* BudgetStoreContract.makeFromStore(
          Effect.provideService(makeClusterStore(), Ledger.Sink, sink)
        )({ name: root })
        yield* budget.record({ tokens: 3 }, { labels: { root } })
        yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 9 }, { labels: { root } }), (r) => r.commit({ tokens: 4 })))
      }
      yield* eventually("every tree's entries reached the sink", Effect.sync(() => state.written.size === 2 * trees.length))
      assert.deepStrictEqual(
        [...state.written.values()].map((e) => [e.kind, e.tokens, e.labels["root"] === e.budget]).sort(),
        trees.flatMap(() => [["commit", 4, true], ["record", 3, true]]).sort()
      )
    }))
})
