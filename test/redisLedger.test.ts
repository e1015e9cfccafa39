/**
 * The ledger on Redis: the script that charges appends the entry to the
 * tree's outbox (a Stream) in the same step; drainers in processes with a
 * sink hand entries over and delete them; a drainer that dies with a batch
 * leaves it to another; the outbox's bound refuses new charges; a retried
 * commit or record after a lost reply is one entry.
 */
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Stream } from "effect"
import * as Redis from "effect/persistence/Redis"
import { type BudgetEvent, type BudgetOptions, type BudgetService, Ledger, usdToNanos } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import type { RedisStoreOptions } from "../src/redis.ts"
import { BudgetStoreContract } from "../src/testing.ts"
import * as Scripts from "../src/internal/redis/scripts.ts"
import { capturingLogs } from "./support/logs.ts"
import { collectingSink } from "./support/ledgerSink.ts"
import { ownRedis } from "./support/ownRedis.ts"
import { eventually } from "./support/poll.ts"
import { available, RedisLive, runBatch, testPrefix } from "./support/redis.ts"

/** A budget of a Redis store under `prefix`, with the sink if one is given. */
const openOn = (
  redis: Layer.Layer<Redis.Redis>,
  prefix: string,
  budget: BudgetOptions,
  sink: Ledger.Sink["Service"] | undefined,
  store: RedisStoreOptions = {}
): Effect.Effect<BudgetService, unknown, import("effect").Scope.Scope> => {
  // The client lives as long as the budget's scope.
  const made = Effect.flatMap(Layer.build(redis), (client) =>
    RedisBudget.makeStore({ ...store, prefix }).pipe(Effect.provideService(Redis.Redis, Context.get(client, Redis.Redis))))
  return BudgetStoreContract.makeFromStore(sink === undefined ? made : Effect.provideService(made, Ledger.Sink, sink))(budget)
}

const sumsOf = (entries: Iterable<Ledger.Entry>) => {
  let tokens = 0
  let nanos = 0
  for (const entry of entries) {
    tokens += entry.tokens
    nanos += entry.nanos
  }
  return { tokens, nanos }
}

describe.runIf(available)("ledger on Redis", () => {
  it.live("every record and commit is one entry with its labels; a retried record and a release are none", () =>
    Effect.gen(function*() {
      const { sink, state } = yield* collectingSink()
      const org = yield* openOn(RedisLive, testPrefix("ledger"), { name: "org", tokenCap: 10_000 }, sink)
      const team = yield* org.child("team")
      yield* org.record({ tokens: 10, usd: 0.01 }, { labels: { user: "ada" } })
      yield* team.record({ tokens: 7 }, { id: "req-1", labels: { request: "req-1" } })
      yield* team.record({ tokens: 7 }, { id: "req-1", labels: { request: "req-1" } })
      yield* Effect.scoped(Effect.gen(function*() {
        const r = yield* team.reserve({ tokens: 100, usd: 0.1 }, { labels: { feature: "search" } })
        yield* r.commit({ tokens: 40, usd: 0.04 })
      }))
      yield* Effect.scoped(team.reserve({ tokens: 5 }, { labels: { feature: "released" } }))
      // a commit after its hold was released: charged, with its labels
      yield* capturingLogs(() =>
        Effect.gen(function*() {
          const late = yield* Effect.scoped(team.reserve({ tokens: 9 }, { labels: { feature: "late" } }))
          yield* late.commit({ tokens: 3 })
        })
      )
      yield* eventually("four entries reached the sink", Effect.sync(() => state.written.size === 4))
      const entries = [...state.written.values()].sort((a, b) => a.at - b.at || a.id.localeCompare(b.id))
      assert.deepStrictEqual(
        entries.map((e) => [e.kind, e.budget, e.tokens, e.nanos, e.labels]).sort(),
        [
          ["commit", "org/team", 3, 0, { feature: "late" }],
          ["commit", "org/team", 40, 40_000_000, { feature: "search" }],
          ["record", "org", 10, 10_000_000, { user: "ada" }],
          ["record", "org/team", 7, 0, { request: "req-1" }]
        ].sort()
      )
      assert.strictEqual(new Set(entries.map((e) => e.id)).size, 4)
      const snap = yield* org.snapshot
      assert.deepStrictEqual(sumsOf(entries), { tokens: snap.tokensUsed, nanos: usdToNanos(snap.usdUsed) })
      assert.strictEqual(state.again, 0)
    }))

  it.live("a process without a sink charges a ledgered tree: its entries are written, and drained by one with a sink", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("ledger")
      const { sink, state } = yield* collectingSink()
      const drained = yield* openOn(RedisLive, prefix, { name: "org" }, sink)
      const other = yield* openOn(RedisLive, prefix, { name: "org" }, undefined)
      for (let i = 1; i <= 5; i++) yield* other.record({ tokens: i }, { labels: { from: "other" } })
      yield* eventually("the other process's entries reached the sink", Effect.sync(() => state.written.size === 5))
      assert.deepStrictEqual(sumsOf(state.written.values()), { tokens: 15, nanos: 0 })
      assert.strictEqual((yield* drained.snapshot).tokensUsed, 15)
    }))

  it.live("a hold whose process died is an expired entry: a zero charge, with its labels", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("ledger")
      const { sink, state } = yield* collectingSink()
      const org = yield* openOn(RedisLive, prefix, { name: "org", tokenCap: 100 }, sink)
      // A hold as a process takes it, leased 100 ms, that nobody renews.
      const redis = Context.get(yield* Layer.build(RedisLive), Redis.Redis)
      const tree = `${prefix}{org}`
      yield* runBatch(redis, tree, [
        { _tag: "Reserve", chain: [`${tree}:n:org`], id: "dead-process-hold", tokens: 60, nanos: 0, labels: "{\"user\":\"ghost\"}" }
      ], 100)
      assert.strictEqual((yield* org.snapshot).tokensReserved, 60)
      // Its lease runs out; the next look gives it back.
      yield* eventually("the hold was given back", Effect.map(org.snapshot, (s) => s.tokensReserved === 0))
      yield* eventually("its entry reached the sink", Effect.sync(() => state.written.size === 1))
      const [entry] = [...state.written.values()]
      assert.deepStrictEqual([entry!.kind, entry!.tokens, entry!.nanos, entry!.labels], ["expired", 0, 0, { user: "ghost" }])
      assert.match(entry!.id, /^dead-process-hold@\d+-\d+$/)
    }))

  it.live("at maxBacklog new charges are refused, a commit is charged and written; all drain when the sink is back", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { sink, state } = yield* collectingSink({ maxBacklog: 3 })
        state.down = true
        const org = yield* openOn(RedisLive, testPrefix("ledger"), { name: "org" }, sink)
        yield* Effect.scoped(Effect.gen(function*() {
          const held = yield* org.reserve({ tokens: 10 })
          for (let i = 0; i < 3; i++) yield* org.record({ tokens: 1 })
          const refused = yield* Effect.flip(org.record({ tokens: 1 }))
          assert.strictEqual(refused._tag, "BudgetUnavailable")
          assert.include(refused.message, "ledger outbox holds 3 entries")
          const waiting = yield* Effect.flip(Effect.scoped(org.reserve({ tokens: 1 }, { onExceeded: "wait" })))
          assert.strictEqual(waiting._tag, "BudgetUnavailable")
          yield* held.commit({ tokens: 4 })
        }))
        assert.strictEqual((yield* org.snapshot).tokensUsed, 7)
        state.down = false
        yield* eventually("the outbox drained", Effect.sync(() => state.written.size === 4))
        yield* org.record({ tokens: 1 })
      })
    ))

  it.live("a batch a drainer took and never finished (it died) is taken over after a lease, and written once", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("ledger")
      const writer = yield* openOn(RedisLive, prefix, { name: "org" }, undefined)
      // the tree keeps a ledger once a store with a sink opened it
      const { sink: first } = yield* collectingSink()
      yield* Effect.scoped(openOn(RedisLive, prefix, { name: "org" }, first, { leaseTtl: "200 millis" }))
      for (let i = 0; i < 3; i++) yield* writer.record({ tokens: 5 })
      // A drainer that reads the batch and dies before it hands it over.
      const redis = Context.get(yield* Layer.build(RedisLive), Redis.Redis)
      const outbox = `${prefix}{org}:ledger`
      yield* redis.eval(Scripts.ledgerTake)(outbox, "died", 100, 60_000)
      const { sink, state } = yield* collectingSink()
      yield* openOn(RedisLive, prefix, { name: "org" }, sink, { leaseTtl: "200 millis" })
      yield* eventually("another drainer took the batch over", Effect.sync(() => state.written.size === 3))
      assert.deepStrictEqual(sumsOf(state.written.values()), { tokens: 15, nanos: 0 })
      yield* eventually("the outbox is empty", Effect.map(redis.send<number>("XLEN", outbox), (n) => n === 0))
    }))

  it.live("a commit and a record retried after their replies were lost (CLIENT PAUSE) are one entry each", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const server = yield* ownRedis()
        const client = Layer.orDie(NodeRedis.layer({ url: server.url }))
        const { sink, state } = yield* collectingSink()
        const org = yield* openOn(client, "ledger:", { name: "org" }, sink, { timeout: "200 millis" })
        const pauser = Context.get(yield* Layer.build(client), Redis.Redis)
        const pause = (millis: number) => pauser.send("CLIENT", "PAUSE", String(millis), "WRITE")
        yield* Effect.scoped(Effect.gen(function*() {
          const hold = yield* org.reserve({ tokens: 50 }, { labels: { call: "paused" } })
          yield* pause(500)
          const lost = yield* Effect.flip(hold.commit({ tokens: 25 }))
          assert.strictEqual(lost._tag, "BudgetUnavailable")
          yield* Effect.retry(hold.commit({ tokens: 25 }), { times: 20 })
        }))
        yield* pause(500)
        const lostRecord = yield* Effect.flip(org.record({ tokens: 8 }, { id: "req-9" }))
        assert.strictEqual(lostRecord._tag, "BudgetUnavailable")
        yield* Effect.retry(org.record({ tokens: 8 }, { id: "req-9" }), { times: 20 })
        yield* eventually("both entries reached the sink", Effect.sync(() => state.written.size === 2))
        const snap = yield* org.snapshot
        assert.strictEqual(snap.tokensUsed, 33)
        assert.deepStrictEqual(sumsOf(state.written.values()), { tokens: 33, nanos: 0 })
        const outbox = Context.get(yield* Layer.build(client), Redis.Redis)
        yield* eventually("the outbox is empty", Effect.map(outbox.send<number>("XLEN", "ledger:{org}:ledger"), (n) => n === 0))
      })
    ))

  it.live("labels reach the events, with a ledger or without", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("ledger")
      const org = yield* openOn(RedisLive, prefix, { name: "org" }, undefined)
      const seen: Array<BudgetEvent> = []
      yield* Effect.forkScoped(Stream.runForEach(org.events, (e) => Effect.sync(() => seen.push(e))), {
        startImmediately: true
      })
      const redis = Context.get(yield* Layer.build(RedisLive), Redis.Redis)
      yield* eventually(
        "the scripts know someone listens",
        Effect.map(redis.send<string | null>("HGET", `${prefix}{org}:n:org`, "lq"), (lq) => Number(lq) > Date.now())
      )
      yield* org.record({ tokens: 1 }, { labels: { user: "ada" } })
      yield* Effect.scoped(Effect.flatMap(org.reserve({ tokens: 2 }, { labels: { user: "bob" } }), (r) => r.commit()))
      yield* Effect.scoped(org.reserve({ tokens: 3 }, { labels: { user: "cy" } }))
      yield* org.record({ tokens: 4 })
      yield* eventually("six events arrived", Effect.sync(() => seen.length === 6))
      assert.deepStrictEqual(seen.map((e) => [e._tag, "labels" in e ? e.labels : undefined]), [
        ["Recorded", { user: "ada" }],
        ["Reserved", { user: "bob" }],
        ["Committed", { user: "bob" }],
        ["Reserved", { user: "cy" }],
        ["Released", { user: "cy" }],
        ["Recorded", undefined]
      ])
    }))

  it.live("a commit after its hold's lease ran out carries the hold's labels (the client sends them)", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("ledger")
      const { sink, state } = yield* collectingSink()
      const org = yield* openOn(RedisLive, prefix, { name: "org", tokenCap: 100 }, sink)
      const redis = Context.get(yield* Layer.build(RedisLive), Redis.Redis)
      const tree = `${prefix}{org}`
      const chain = [`${tree}:n:org`]
      yield* runBatch(redis, tree, [
        { _tag: "Reserve", chain, id: "paused-hold", tokens: 60, nanos: 0, labels: "{\"user\":\"ada\"}" }
      ], 100)
      yield* eventually("the lease ran out", Effect.map(org.snapshot, (s) => s.tokensReserved === 0))
      yield* runBatch(redis, tree, [
        { _tag: "Commit", chain, id: "paused-hold", tokens: 40, nanos: 0, estimated: false, labels: "{\"user\":\"ada\"}" }
      ], 100)
      yield* eventually("two entries", Effect.sync(() => state.written.size === 2))
      assert.deepStrictEqual(
        [...state.written.values()].map((e) => [e.kind, e.tokens, e.labels]).sort(),
        [["commit", 40, { user: "ada" }], ["expired", 0, { user: "ada" }]]
      )
    }))

  it.live("a root lost and made again by a process without a sink keeps the tree's ledger; a commit on it writes its entry", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const server = yield* ownRedis()
        const client = Layer.orDie(NodeRedis.layer({ url: server.url }))
        const raw = Context.get(yield* Layer.build(client), Redis.Redis)
        const { sink, state } = yield* collectingSink()
        const withSink = yield* openOn(client, "budget:", { name: "org" }, sink, { onStateLost: "recreate" })
        const team = yield* withSink.child("team")
        const noSink = yield* openOn(client, "budget:", { name: "org" }, undefined, { onStateLost: "recreate" })
        // a commit whose root was lost: charged where kept, and written
        yield* Effect.scoped(Effect.gen(function*() {
          const hold = yield* team.reserve({ tokens: 40 }, { labels: { user: "ada" } })
          yield* raw.send("DEL", "budget:{org}:n:org")
          yield* hold.commit({ tokens: 30 })
        }))
        // the root made again by a process without a sink: entries still written
        yield* raw.send("DEL", "budget:{org}:n:org")
        for (let i = 0; i < 5; i++) yield* noSink.record({ tokens: 10 })
        yield* eventually("six entries", Effect.sync(() => state.written.size === 6))
        assert.deepStrictEqual(sumsOf(state.written.values()), { tokens: 80, nanos: 0 })
        assert.strictEqual((yield* team.snapshot).tokensUsed, 30)
      })
    ))

  it.live("a drainer that closes with nothing pending leaves the outbox's group: it stays as small as the fleet", () =>
    Effect.gen(function*() {
      const prefix = testPrefix("ledger")
      const redis = Context.get(yield* Layer.build(RedisLive), Redis.Redis)
      for (let i = 0; i < 5; i++) {
        const { sink, state } = yield* collectingSink()
        yield* Effect.scoped(Effect.gen(function*() {
          const org = yield* openOn(RedisLive, prefix, { name: "org" }, sink)
          yield* org.record({ tokens: 1 })
          yield* eventually("drained", Effect.sync(() => state.written.size === 1))
          yield* eventually(
            "acknowledged",
            Effect.map(redis.send<number>("XLEN", `${prefix}{org}:ledger`), (n) => n === 0)
          )
        }))
      }
      const consumers = yield* redis.send<Array<unknown>>("XINFO", "CONSUMERS", `${prefix}{org}:ledger`, "drain")
      assert.strictEqual(consumers.length, 0)
    }))
})
