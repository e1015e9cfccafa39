/**
 * Redis Cluster for the Redis store: effect's `Redis` service over
 * node-redis's cluster client, as `NodeRedis` from `@effect/platform-node`
 * provides it over a single-node client.
 *
 * Every key of one budget tree shares a hash tag (`<prefix>{<root>}:...`),
 * so a tree lives in one slot, on one master, and each of its scripts runs
 * there whole: `EVAL`/`EVALSHA` and `send` are routed by their first key,
 * and scripts are loaded (again on `NOSCRIPT`) on every node. Pub/sub uses
 * plain `SUBSCRIBE` through the cluster client: the scripts `PUBLISH`, which
 * a cluster forwards to every node, so one subscription on any node
 * receives every tree's messages.
 *
 * node-redis (`redis`) is an optional peer dependency of
 * `effect-token-budget/redis`: it is loaded when a layer of this module is
 * built, never by importing it.
 *
 * @since 0.2.0
 */
import { Config, Context, Effect, Layer } from "effect"
import * as Redis from "effect/persistence/Redis"
import type { RedisClusterOptions, RedisClusterType } from "redis"

/**
 * The options of a cluster layer: node-redis's cluster options (`rootNodes`
 * to discover the cluster from, `defaults` for every connection, ...) and
 * the pool behind `Redis.reserve`.
 *
 * @example
 * ```ts
 * import type { NodeRedisCluster } from "effect-token-budget/redis"
 *
 * const options: NodeRedisCluster.Options = {
 *   rootNodes: [{ url: "redis://10.0.0.1:7000" }, { url: "redis://10.0.0.2:7000" }],
 *   defaults: { password: "secret", socket: { connectTimeout: 2000 } },
 *   maxConnections: 4
 * }
 * ```
 *
 * @since 0.2.0
 * @category models
 */
export type Options = RedisClusterOptions<{}, {}, {}, 3, {}> & Redis.PoolOptions

/**
 * The cluster client under the `Redis` service, and `use` to call it with
 * failures as `RedisError`.
 *
 * @example
 * ```ts
 * import { NodeRedisCluster } from "effect-token-budget/redis"
 * import { Effect } from "effect"
 *
 * const masters = Effect.gen(function*() {
 *   const { client } = yield* NodeRedisCluster.NodeRedisCluster
 *   return client.masters.map((master) => master.address)
 * })
 * ```
 *
 * @since 0.2.0
 * @category services
 */
export class NodeRedisCluster extends Context.Service<NodeRedisCluster, {
  readonly client: RedisClusterType
  readonly use: <A>(f: (client: RedisClusterType) => Promise<A>) => Effect.Effect<A, Redis.RedisError>
}>()("effect-token-budget/NodeRedisCluster") {}

type Listener = NonNullable<Parameters<RedisClusterType["unsubscribe"]>[1]>

const commandsWithKeysAfterCount = new Set(["EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"])

/**
 * The key whose slot a command runs in: for scripts and functions the first
 * of their keys (none when they have none), for every other command its
 * first argument, which is the key of nearly every keyed one. Keyless
 * commands (`PING`, `TIME`, `SCRIPT LOAD`, `PUBLISH`, ...) and commands over
 * many keys (`UNLINK`, `MGET`, ...) are routed by node-redis's command
 * table, which ignores this key for them: `SCRIPT LOAD` goes to every node,
 * `UNLINK` to every slot of its keys.
 */
const firstKey = (command: string, args: ReadonlyArray<string>): string | undefined =>
  commandsWithKeysAfterCount.has(command.toUpperCase()) ? (Number(args[1]) > 0 ? args[2] : undefined) : args[0]

const sendWith =
  (cluster: RedisClusterType) =>
  <A = unknown>(command: string, ...args: ReadonlyArray<string>): Effect.Effect<A, Redis.RedisError> =>
    Effect.tryPromise({
      // isReadonly false: every command runs on a master, which owns the slot.
      try: () => cluster.sendCommand(firstKey(command, args), false, [command, ...args]) as Promise<A>,
      catch: (cause) => new Redis.RedisError({ cause })
    })

// Reconnects with node-redis's backoff, capped at 2 seconds, as NodeRedis
// does once connected: a node's client is not replaced when it gives up, so
// it never does; a node that is gone for good leaves the topology when
// node-redis rediscovers it.
const backoff = (retries: number): number => Math.min(2 ** retries * 50, 2000) + Math.floor(Math.random() * 200)

const make = Effect.fnUntraced(function*(
  { acquireTimeout, idleTimeout, maxConnections, minConnections, ...options }: Options
) {
  const { createCluster } = yield* Effect.tryPromise({
    try: () => import("redis"),
    catch: (cause) => new Redis.RedisError({ cause })
  })
  let ready = false
  const defaults = options.defaults ?? {}
  const socket = defaults.socket
  const cluster = yield* Effect.acquireRelease(
    Effect.sync((): RedisClusterType =>
      createCluster({
        ...options,
        // Until the cluster is connected a refused node fails the layer at
        // once, instead of retrying forever.
        defaults: socket?.reconnectStrategy === undefined
          ? { ...defaults, socket: { ...socket, reconnectStrategy: (retries, cause) => ready ? backoff(retries) : cause } }
          : defaults
      })
    ),
    (cluster) => Effect.ignoreCause(Effect.promise(() => cluster.close()))
  )

  // An `error` event without a listener would crash the process; command
  // failures still reach their callers as `RedisError`.
  const runSync = Effect.runSyncWith(yield* Effect.context<never>())
  cluster.on("error", (cause) => {
    runSync(Effect.logWarning("NodeRedisCluster error", cause))
  })
  cluster.on("node-error", (cause, node: { readonly host: string; readonly port: number }) => {
    runSync(Effect.logWarning(`NodeRedisCluster node ${node.host}:${node.port} error`, cause))
  })

  yield* Effect.tryPromise({
    try: () => cluster.connect(),
    catch: (cause) => new Redis.RedisError({ cause })
  })
  ready = true

  const use = <A>(f: (client: RedisClusterType) => Promise<A>) =>
    Effect.tryPromise({
      try: () => f(cluster),
      catch: (cause) => new Redis.RedisError({ cause })
    })

  const redis = yield* Redis.make({
    // `SCRIPT LOAD` reaches every node and `EVALSHA` the master of its first
    // key, so the script cache of `Redis.make` is right on a cluster; a
    // `NOSCRIPT` (a node restarted or promoted) loads the script again.
    send: sendWith(cluster),
    // A reserved connection is a cluster client of its own, connected to a
    // node on its first command there, and never reconnecting: a dropped
    // socket fails the command in flight, and the connection leaves the pool.
    connect: Effect.tryPromise({
      try: async () => {
        const connection = cluster.duplicate({
          minimizeConnections: true,
          defaults: { ...defaults, socket: { ...socket, reconnectStrategy: false } }
        })
        connection.on("error", (cause) => {
          runSync(Effect.logWarning("NodeRedisCluster reserved connection error", cause))
        })
        try {
          return await connection.connect()
        } catch (cause) {
          connection.destroy()
          throw cause
        }
      },
      catch: (cause) => new Redis.RedisError({ cause })
    }).pipe(
      Effect.map((connection) => ({
        send: sendWith(connection),
        // `destroy` fails commands in flight instead of waiting for them.
        close: Effect.sync(() => {
          if (connection.isOpen) connection.destroy()
        })
      }))
    ),
    pool: { acquireTimeout, idleTimeout, maxConnections, minConnections },
    // The cluster client's one pub/sub connection, to a node of its choice;
    // node-redis reconnects it, moves it when its node leaves, and subscribes
    // every channel again. Messages published meanwhile are lost, as with
    // NodeRedis: a missed wake-up costs a waiter at most a lease.
    subscribe: (channel, onMessage) => {
      // Listeners get strings: no buffer mode is asked for.
      const listener: Listener = (message, channel) => onMessage({ channel: String(channel), message: String(message) })
      return Effect.acquireRelease(
        Effect.tryPromise({
          try: () => cluster.subscribe(channel, listener),
          catch: (cause) => new Redis.RedisError({ cause })
        }),
        () => Effect.ignoreCause(Effect.promise(() => cluster.unsubscribe(channel, listener)))
      ).pipe(Effect.as(Effect.never))
    }
  })

  return Context.make(NodeRedisCluster, NodeRedisCluster.of({ client: cluster, use })).pipe(
    Context.add(Redis.Redis, redis)
  )
})

/**
 * Provides `Redis` (and `NodeRedisCluster`) over a node-redis cluster client,
 * connected when the layer is built and closed when its scope closes.
 *
 * @example
 * ```ts
 * import { NodeRedisCluster, RedisBudget } from "effect-token-budget/redis"
 * import { Layer } from "effect"
 *
 * const Shared = RedisBudget.layer({ name: "org", usdCap: 100 }).pipe(
 *   Layer.provide(NodeRedisCluster.layer({
 *     rootNodes: [{ url: "redis://10.0.0.1:7000" }, { url: "redis://10.0.0.2:7000" }],
 *     defaults: { password: "secret" }
 *   }))
 * )
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<Redis.Redis | NodeRedisCluster, Redis.RedisError> =>
  Layer.effectContext(make(options))

/**
 * Provides `Redis` (and `NodeRedisCluster`) over a node-redis cluster client
 * whose options come from `Config`.
 *
 * @example
 * ```ts
 * import { NodeRedisCluster, RedisBudget } from "effect-token-budget/redis"
 * import { Config, Layer } from "effect"
 *
 * // REDIS_CLUSTER_URLS=redis://10.0.0.1:7000,redis://10.0.0.2:7000
 * const rootNodes = Config.String("REDIS_CLUSTER_URLS").pipe(
 *   Config.map((urls) => urls.split(",").map((url) => ({ url })))
 * )
 * const Shared = RedisBudget.layerConfig().pipe(
 *   Layer.provide(NodeRedisCluster.layerConfig({ rootNodes }))
 * )
 * ```
 *
 * @since 0.2.0
 * @category layers
 */
export const layerConfig = (
  options: Config.Wrap<Options>
): Layer.Layer<Redis.Redis | NodeRedisCluster, Redis.RedisError | Config.ConfigError> =>
  Layer.effectContext(Effect.flatMap(Config.unwrap(options), make))
