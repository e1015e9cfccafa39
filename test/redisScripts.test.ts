/**
 * The Lua scripts make every check before their first write: a refused
 * operation writes nothing, and a malformed argument fails the script with
 * nothing written, whatever came before it in a batch.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import * as Redis from "effect/persistence/Redis"
import type * as Batch from "../src/internal/redis/batch.ts"
import * as Scripts from "../src/internal/redis/scripts.ts"
import { available, RedisLive, runBatch, testPrefix } from "./support/redis.ts"

/** Every key of `tree` and its value, in order: what a script could have written. */
const everything = (redis: Redis.Redis["Service"], tree: string) =>
  Effect.gen(function*() {
    const keys: Array<string> = []
    let cursor = "0"
    do {
      const [next, found] = yield* redis.send<[string, Array<string>]>("SCAN", cursor, "MATCH", `${tree}*`, "COUNT", "1000")
      keys.push(...found)
      cursor = next
    } while (cursor !== "0")
    const values: Record<string, unknown> = {}
    for (const key of keys.sort()) {
      const type = yield* redis.send<string>("TYPE", key)
      values[key] = type === "hash"
        ? yield* redis.send("HGETALL", key)
        : type === "zset"
        ? yield* redis.send("ZRANGE", key, "0", "-1", "WITHSCORES")
        : type === "set"
        ? yield* Effect.map(redis.send<Array<string>>("SMEMBERS", key), (members) => members.sort())
        : type === "stream"
        ? yield* redis.send("XRANGE", key, "-", "+")
        : yield* redis.send("GET", key)
    }
    return values
  })

/** A tree `root` (10 tokens) with a child `c`, and a hold on the child to settle. */
const makeTree = Effect.gen(function*() {
  const redis = yield* Effect.map(Layer.build(RedisLive), Context.get(Redis.Redis))
  const tree = `${testPrefix("scripts")}{root}`
  const root = `${tree}:n:root`
  const child = [`${tree}:n:root/c`, root]
  yield* redis.eval(Scripts.ensure)([root], tree, 10, -1, "", 0, "", true, "", -1, -1, 0, [])
  yield* redis.eval(Scripts.ensure)(child, tree, -1, -1, "", 0, "", true, "", -1, -1, 0, [])
  yield* runBatch(redis, tree, [{ _tag: "Reserve", chain: child, id: "held", tokens: 2, nanos: 0 }])
  return { redis, tree, root: [root], child }
})

describe.runIf(available)("Redis scripts", () => {
  it.effect("a refused operation in a batch writes nothing; the others run as if alone", () =>
    Effect.gen(function*() {
      const { child, redis, root, tree } = yield* makeTree
      const replies = yield* runBatch(redis, tree, [
        { _tag: "Record", chain: root, tokens: 5, nanos: 0 },
        { _tag: "Reserve", chain: child, id: "refused", tokens: 4, nanos: 0 },
        { _tag: "Record", chain: child, tokens: 3, nanos: 0 }
      ])
      assert.deepStrictEqual(replies, ["ok", "x tokens 7 10 2 cap -", "ok"])
      const after = yield* everything(redis, tree)
      assert.notProperty(after, `${tree}:h:refused`)
      assert.deepStrictEqual((after[`${tree}:leases`] as Array<[string, number]>).map(([id]) => id), ["held"])
      assert.deepStrictEqual(yield* redis.send("HMGET", root[0]!, "tu", "tr"), ["8", "2"])
    }))

  it.effect("a malformed argument anywhere in a batch fails it whole, with nothing written", () =>
    Effect.gen(function*() {
      const { child, redis, root, tree } = yield* makeTree
      const before = yield* everything(redis, tree)
      const valid: ReadonlyArray<Batch.Operation> = [
        { _tag: "Record", chain: root, tokens: 1, nanos: 0 },
        { _tag: "Reserve", chain: child, id: "new", tokens: 1, nanos: 0 },
        { _tag: "Commit", chain: child, id: "held", tokens: 1, nanos: 0, estimated: false }
      ]
      for (
        const malformed of [
          { _tag: "Record", chain: root, tokens: 1.5, nanos: 0 },
          { _tag: "Reserve", chain: child, id: "x", tokens: -1, nanos: 0 },
          { _tag: "Commit", chain: child, id: "", tokens: 1, nanos: 0, estimated: false },
          { _tag: "Commit", chain: child, id: "held", tokens: 1, nanos: Number.MAX_SAFE_INTEGER * 4, estimated: false }
        ] satisfies ReadonlyArray<Batch.Operation>
      ) {
        const error = yield* Effect.flip(runBatch(redis, tree, [...valid, malformed]))
        assert.include(String(error.cause), "invalid argument")
        assert.deepStrictEqual(yield* everything(redis, tree), before)
      }
    }))

  it.effect("the other scripts check their arguments before they write", () =>
    Effect.gen(function*() {
      const { child, redis, tree } = yield* makeTree
      const before = yield* everything(redis, tree)
      const failures: ReadonlyArray<Effect.Effect<unknown, Redis.RedisError>> = [
        redis.eval(Scripts.reserveWaiting)(child, tree, 1, 0, "w", Number.NaN, "t", ""),
        redis.eval(Scripts.reserveWaiting)(child, tree, 1, 0, "w", 1_000, "", ""),
        redis.eval(Scripts.ensure)(child, tree, 5, -2, "", 0, "", true, "", -1, -1, 0, []),
        redis.eval(Scripts.ensure)(child, tree, 5, -1, "half", 0, "", true, "", -1, -1, 0, []),
        redis.eval(Scripts.ensure)(child, tree, 5, -1, "", 0, "", true, "x:1:1000:1", -1, -1, 0, []),
        redis.eval(Scripts.ensure)(child, tree, 5, -1, "", 0, "", true, "t:1:1000:many", -1, -1, 0, []),
        redis.eval(Scripts.ensure)(child, tree, 5, -1, "", 0, "", true, "", -2, -1, 0, []),
        redis.eval(Scripts.extend)(child, tree, [1.5]),
        redis.eval(Scripts.leave)(child, tree, "", "", 1_000)
      ]
      for (const failure of failures) {
        assert.include(String((yield* Effect.flip(failure)).cause), "invalid argument")
        assert.deepStrictEqual(yield* everything(redis, tree), before)
      }
    }))
})
