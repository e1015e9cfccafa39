/**
 * Batches on Redis: the hot operations that fibers send together go as one
 * script, which must answer each as if it had run alone, in order; and they
 * must go together, or batching buys nothing.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer } from "effect"
import * as Redis from "effect/persistence/Redis"
import fc from "fast-check"
import { BudgetUnavailable, maxUsd } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import * as Batch from "../src/internal/redis/batch.ts"
import * as Scripts from "../src/internal/redis/scripts.ts"
import { capturingLogs, outageLines } from "./support/logs.ts"
import { available, RedisLive, runBatch, testPrefix } from "./support/redis.ts"

/** A tree `root` (100 tokens, 1 dollar) with a child `c` (60 tokens), under keys of its own. */
const makeTree = (redis: Redis.Redis["Service"]) =>
  Effect.gen(function*() {
    const prefix = testPrefix("batch")
    const root = yield* RedisBudget.make({ name: "root", tokenCap: 100, usdCap: 1 }, { prefix }).pipe(
      Effect.provideService(Redis.Redis, redis)
    )
    yield* root.child("c", { tokenCap: 60 })
    const tree = `${prefix}{root}`
    const rootKey = `${tree}:n:root`
    return { tree, chains: [[rootKey], [`${tree}:n:root/c`, rootKey]] as const }
  })

type Step =
  | { readonly op: "record"; readonly chain: number; readonly tokens: number; readonly nanos: number }
  | { readonly op: "reserve"; readonly chain: number; readonly tokens: number; readonly nanos: number }
  | { readonly op: "commit"; readonly pick: number; readonly tokens: number; readonly nanos: number; readonly estimated: boolean }
  | { readonly op: "release"; readonly pick: number }

const chain = fc.integer({ min: 0, max: 1 })
const tokens = fc.integer({ min: 0, max: 50 })
const nanos = fc.integer({ min: 0, max: 500_000_000 })
const record = fc.record({ op: fc.constant("record" as const), chain, tokens, nanos })
const reserve = fc.record({ op: fc.constant("reserve" as const), chain, tokens, nanos })
const commit = fc.record({ op: fc.constant("commit" as const), pick: fc.nat(5), tokens, nanos, estimated: fc.boolean() })
const release = fc.record({ op: fc.constant("release" as const), pick: fc.nat(5) })
const step: fc.Arbitrary<Step> = fc.oneof(record, reserve, commit, release)
/** Mostly holds, for the batch to settle: some more than once. */
const early: fc.Arbitrary<Step> = fc.oneof({ arbitrary: reserve, weight: 3 }, { arbitrary: step, weight: 1 })

/**
 * The operations of `steps` on a tree: holds are named in order, and a
 * commit or release picks one reserved before it, or one nobody holds.
 */
const operationsOf = (chains: ReadonlyArray<ReadonlyArray<string>>, steps: ReadonlyArray<Step>) => {
  const reserved: Array<{ readonly id: string; readonly chain: ReadonlyArray<string> }> = []
  return steps.map((s, i): Batch.Operation => {
    switch (s.op) {
      case "record":
        return { _tag: "Record", chain: chains[s.chain]!, tokens: s.tokens, nanos: s.nanos }
      case "reserve": {
        const id = `hold-${i}`
        reserved.push({ id, chain: chains[s.chain]! })
        return { _tag: "Reserve", chain: chains[s.chain]!, id, tokens: s.tokens, nanos: s.nanos }
      }
      default: {
        const held = reserved[s.pick % (reserved.length + 1)] ?? { id: "nobody", chain: chains[0]! }
        return s.op === "commit"
          ? { _tag: "Commit", ...held, tokens: s.tokens, nanos: s.nanos, estimated: s.estimated }
          : { _tag: "Release", ...held }
      }
    }
  })
}

/** Every counter of the tree's two budgets, and every hold and settlement. */
const state = (redis: Redis.Redis["Service"], tree: string, ids: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const counters = []
    for (const path of ["root", "root/c"]) {
      // A counter never written reads as 0.
      const read = yield* redis.send<Array<string | null>>("HMGET", `${tree}:n:${path}`, "tu", "nu", "tr", "nr")
      counters.push(read.map((x) => Number(x ?? 0)))
    }
    const values = ids.length === 0 ? [] : yield* redis.send<Array<string | null>>("MGET", ...ids.map((id) => `${tree}:h:${id}`))
    // Without the generations, which differ from tree to tree (a budget's
    // first is the time it was made).
    const holds = values.map((v) => v?.replace(/^(h \d+ \d+) [^ ]+ /, "$1 ") ?? null)
    return { counters, holds }
  })

/** `field` set on the root of `tree`, as a listener (`lq`) or a waiter (`wq`) would. */
const mark = (redis: Redis.Redis["Service"], tree: string, field: "lq" | "wq" | undefined) =>
  field === undefined
    ? Effect.void
    : Effect.asVoid(redis.send("HSET", `${tree}:n:root`, field, field === "lq" ? String(Date.now() + 60_000) : "1"))

describe.runIf(available)("batches on Redis", () => {
  it.effect("a batch answers each operation as if it had run alone, in order, and leaves the same books", () =>
    Effect.gen(function*() {
      const redis = yield* Effect.map(Layer.build(RedisLive), Context.get(Redis.Redis))
      yield* Effect.promise(() =>
        fc.assert(
          fc.asyncProperty(
            // Steps run alone first (holds to settle), then steps sent as one batch.
            fc.array(early, { maxLength: 8 }),
            fc.array(step, { minLength: 1, maxLength: 30 }),
            // Nobody else / a listener / a waiter: the common path, or the general one for some or all.
            fc.constantFrom(undefined, "lq" as const, "wq" as const),
            (before, steps, field) =>
              Effect.runPromise(Effect.scoped(Effect.gen(function*() {
                const together = yield* makeTree(redis)
                const alone = yield* makeTree(redis)
                yield* mark(redis, together.tree, field)
                yield* mark(redis, alone.tree, field)
                const all = [...before, ...steps]
                const oneByOne = (tree: string, operations: ReadonlyArray<Batch.Operation>) =>
                  Effect.forEach(operations, (operation) => Effect.map(runBatch(redis, tree, [operation]), (r) => r[0]))
                yield* oneByOne(together.tree, operationsOf(together.chains, all).slice(0, before.length))
                const batched = yield* runBatch(redis, together.tree, operationsOf(together.chains, all).slice(before.length))
                const one = (yield* oneByOne(alone.tree, operationsOf(alone.chains, all))).slice(before.length)
                assert.deepStrictEqual(batched, one)
                const ids = all.map((_, i) => `hold-${i}`)
                assert.deepStrictEqual(yield* state(redis, together.tree, ids), yield* state(redis, alone.tree, ids))
              })))
          ),
          { numRuns: 100 }
        )
      )
    }), 60_000)

  it.effect("operations sent together go as one script call, and each gets its own answer", () =>
    Effect.gen(function*() {
      const redis = yield* Effect.map(Layer.build(RedisLive), Context.get(Redis.Redis))
      let calls = 0
      const counting: Redis.Redis["Service"] = {
        ...redis,
        eval: (script) => (...params) => Effect.suspend(() => {
          calls++
          return redis.eval(script)(...params)
        })
      }
      const prefix = testPrefix("batch")
      const budget = yield* RedisBudget.make({ name: "fan", tokenCap: 100, usdCap: maxUsd }, { prefix }).pipe(
        Effect.provideService(Redis.Redis, counting)
      )
      calls = 0
      const outcomes = yield* Effect.forEach(
        Array.from({ length: 64 }, () => budget.record({ tokens: 3 })),
        Effect.result,
        { concurrency: "unbounded" }
      )
      assert.strictEqual(outcomes.filter((o) => o._tag === "Success").length, 33)
      assert.isAtMost(calls, 3, `${calls} script calls for 64 records`)
      assert.strictEqual((yield* budget.snapshot).tokensUsed, 99)
    }))

  it.effect("an operation left before its batch is sent is never sent", () =>
    Effect.gen(function*() {
      const redis = yield* Effect.map(Layer.build(RedisLive), Context.get(Redis.Redis))
      const prefix = testPrefix("batch")
      const budget = yield* RedisBudget.make({ name: "left", tokenCap: 100 }, { prefix }).pipe(
        Effect.provideService(Redis.Redis, redis)
      )
      // One on its way, so the next waits for a batch; it is interrupted before the batch leaves.
      const first = yield* Effect.forkChild(budget.record({ tokens: 1 }), { startImmediately: true })
      const second = yield* Effect.forkChild(budget.record({ tokens: 10 }), { startImmediately: true })
      yield* Fiber.interrupt(second)
      yield* Fiber.join(first)
      assert.strictEqual((yield* budget.snapshot).tokensUsed, 1)
    }))

  it.live("a batch that gets no reply fails each of its operations, alone or together, within the timeout", () =>
    capturingLogs((lines) => Effect.gen(function*() {
      const redis = yield* Effect.map(Layer.build(RedisLive), Context.get(Redis.Redis))
      let answering = true
      // A Redis that stops answering the batch script, as a stalled server would.
      const stalling: Redis.Redis["Service"] = {
        ...redis,
        eval: (script) => (...params) =>
          answering || (script as unknown) !== Scripts.batch ? redis.eval(script)(...params) : Effect.never
      }
      const prefix = testPrefix("batch")
      const budget = yield* RedisBudget.make({ name: "stall", tokenCap: 100 }, { prefix, timeout: "100 millis" }).pipe(
        Effect.provideService(Redis.Redis, stalling)
      )
      answering = false
      // The first goes alone, the rest together.
      const errors = yield* Effect.forEach(
        Array.from({ length: 5 }, () => budget.record({ tokens: 1 })),
        Effect.flip,
        { concurrency: "unbounded" }
      )
      for (const error of errors) {
        assert.instanceOf(error, BudgetUnavailable)
        assert.include(String(error.cause), "no reply within 100 ms")
      }
      answering = true
      assert.strictEqual((yield* budget.snapshot).tokensUsed, 0)
      assert.deepStrictEqual(outageLines(lines), ["Warn start", "Info end"], "said once, and its end once")
    })))
})
