/**
 * `onStateLost: "restore"`: a Redis budget whose state was lost is made
 * again with what the ledger says it spent in its current window, the
 * entries still in the tree's outbox counted from there and the others
 * from PostgreSQL, each once; a commit that found the level lost is not
 * charged to it twice. On a Redis of the test's own, with a table of the
 * test's own.
 */
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer } from "effect"
import * as Redis from "effect/persistence/Redis"
import { type BudgetOptions, Ledger, LedgerUnavailable } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { PgLedger } from "../src/sql-pg.ts"
import * as Scripts from "../src/internal/redis/scripts.ts"
import { capturingLogs } from "./support/logs.ts"
import { ownRedis } from "./support/ownRedis.ts"
import { eventually } from "./support/poll.ts"
import { available as pgAvailable, PgLive, testTable } from "./support/postgres.ts"
import { available as redisAvailable } from "./support/redis.ts"

/**
 * A Redis budget that restores lost state from a table of its own, whose
 * sink can be switched off (`sinkDown`): entries then wait in the outbox.
 */
const setUp = (options: BudgetOptions) =>
  Effect.gen(function*() {
    const server = yield* ownRedis()
    const client = yield* Layer.build(Layer.orDie(NodeRedis.layer({ url: server.url })))
    const redis = Context.get(client, Redis.Redis)
    const table = testTable()
    const ledger = yield* Layer.build(PgLedger.layer({ table }).pipe(Layer.provide(PgLive())))
    const pgSink = Context.get(ledger, Ledger.Sink)
    const state = { sinkDown: false }
    const sink = yield* Ledger.makeSink("switchable", (entries) =>
      state.sinkDown
        ? Effect.fail(new LedgerUnavailable({ sink: "switchable", cause: new Error("switched off") }))
        : pgSink.write(entries))
    const budget = yield* RedisBudget.make(options, { onStateLost: "restore", leaseTtl: "1 second" }).pipe(
      Effect.provide(client),
      Effect.provideService(Ledger.Sink, sink),
      Effect.provideService(Ledger.Totals, Context.get(ledger, Ledger.Totals)),
      Effect.orDie
    )
    const queries = Context.get(ledger, PgLedger.PgLedger)
    const inTable = (path: string) => Effect.map(queries.spend({ budget: path }), ([row]) => row!.tokens)
    const outbox = Effect.map(redis.send<number>("XLEN", "budget:{org}:ledger"), Number)
    return { budget, redis, state, sink: pgSink, inTable, outbox }
  })

describe.runIf(redisAvailable && pgAvailable)("onStateLost: restore", () => {
  it.live("a lost child is made again with what its entries sum to, in the table and in the outbox, each once", () =>
    capturingLogs((lines) =>
      Effect.gen(function*() {
        const { budget, inTable, outbox, redis, state } = yield* setUp({ name: "org", tokenCap: 10_000 })
        const team = yield* budget.child("team")
        const agent = yield* team.child("agent")
        for (let i = 1; i <= 5; i++) yield* agent.record({ tokens: i * 10 }, { labels: { n: String(i) } })
        yield* Effect.scoped(Effect.flatMap(team.reserve({ tokens: 100 }), (r) => r.commit({ tokens: 70 })))
        yield* eventually("drained", Effect.map(inTable("org"), (tokens) => tokens === 220))
        // later entries wait in the outbox
        state.sinkDown = true
        yield* agent.record({ tokens: 5 })
        yield* team.record({ tokens: 3 })
        assert.strictEqual(yield* outbox, 2)
        yield* redis.send("DEL", "budget:{org}:n:org/team")
        // the next operation finds it lost, and rebuilds it: 220 + 8
        assert.strictEqual((yield* team.snapshot).tokensUsed, 228)
        assert.strictEqual((yield* budget.snapshot).tokensUsed, 228)
        assert.isTrue(lines.some((l) => l.text.includes("made again with what the ledger says it spent")))
        // and it charges as before; the outbox drains once the sink is back
        yield* team.record({ tokens: 2 })
        state.sinkDown = false
        yield* eventually("drained again", Effect.map(inTable("org"), (tokens) => tokens === 230), { every: "50 millis" })
        assert.deepStrictEqual([(yield* team.snapshot).tokensUsed, (yield* budget.snapshot).tokensUsed], [230, 230])
      })
    ))

  it.live("a lost root is made again with the whole tree's spend in its window; entries of an earlier window are left out", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { budget, inTable, redis, sink } = yield* setUp({ name: "org", tokenCap: 10_000, window: "1 day" })
        const team = yield* budget.child("team")
        yield* team.record({ tokens: 40 })
        yield* budget.record({ tokens: 2 })
        // an entry of yesterday's window, as an earlier process wrote it
        yield* sink.write([{
          id: "yesterday",
          budget: "org/team",
          kind: "record",
          tokens: 1_000,
          nanos: 0,
          tokensOverage: 0,
          nanosOverage: 0,
          estimated: false,
          labels: {},
          at: Date.now() - 86_400_000,
          windowEndsAt: undefined
        }])
        yield* eventually("drained", Effect.map(inTable("org"), (tokens) => tokens === 1_042))
        yield* redis.send("DEL", "budget:{org}:n:org")
        assert.strictEqual((yield* budget.snapshot).tokensUsed, 42)
      })
    ))

  it.live("a commit that found its level lost is charged to it once: by the rebuild, not again by its completion", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { budget, inTable, redis } = yield* setUp({ name: "org", tokenCap: 10_000 })
        const team = yield* budget.child("team")
        yield* team.record({ tokens: 10 })
        yield* Effect.scoped(Effect.gen(function*() {
          const hold = yield* team.reserve({ tokens: 100 })
          yield* redis.send("DEL", "budget:{org}:n:org/team")
          const settled = yield* hold.commit({ tokens: 60 })
          assert.strictEqual(settled.tokens, 60)
        }))
        assert.deepStrictEqual([(yield* team.snapshot).tokensUsed, (yield* budget.snapshot).tokensUsed], [70, 70])
        yield* eventually("drained", Effect.map(inTable("org"), (tokens) => tokens === 70))
      })
    ))

  it.effect("restore needs a sink and totals in the store's context", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(RedisBudget.makeStore({ onStateLost: "restore" }).pipe(
        Effect.provideService(Redis.Redis, {} as Redis.Redis["Service"])
      ))
      assert.strictEqual(error._tag, "InvalidUsage")
      assert.include(error.message, "needs a Ledger.Sink and Ledger.Totals")
    }))

  describe("two processes, and Redis lost whole", () => {
    /** Two stores on one private Redis and one table, standing for two processes; the first's Totals slowed. */
    const twoProcesses = (options: BudgetOptions, slowMillis: number) =>
      Effect.gen(function*() {
        const server = yield* ownRedis()
        const ledger = yield* Layer.build(PgLedger.layer({ table: testTable() }).pipe(Layer.provide(PgLive())))
        const totals = Context.get(ledger, Ledger.Totals)
        const control = { slowMillis, down: false }
        // the first process's Totals: slowed, or down, as the test says
        const slow = Ledger.Totals.of({
          spent: (query) =>
            control.down
              ? Effect.fail(new LedgerUnavailable({ sink: "test", cause: new Error("down") }))
              : Effect.andThen(Effect.sleep(control.slowMillis), totals.spent(query))
        })
        const open = (withTotals: Ledger.Totals["Service"]) =>
          Effect.gen(function*() {
            const client = yield* Layer.build(Layer.orDie(NodeRedis.layer({ url: server.url })))
            return yield* RedisBudget.make(options, { onStateLost: "restore", leaseTtl: "1 second", timeout: "600 millis" }).pipe(
              Effect.provide(client),
              Effect.provideService(Ledger.Sink, Context.get(ledger, Ledger.Sink)),
              Effect.provideService(Ledger.Totals, withTotals),
              Effect.orDie
            )
          })
        const a = yield* open(slow)
        const b = yield* open(totals)
        const redis = Context.get(yield* Layer.build(Layer.orDie(NodeRedis.layer({ url: server.url }))), Redis.Redis)
        const queries = Context.get(ledger, PgLedger.PgLedger)
        const inTable = (path: string) => Effect.map(queries.spend({ budget: path }), ([row]) => row!.tokens)
        const rebuilding = (key: string) =>
          eventually("a rebuild began", Effect.map(redis.send<string | null>("HGET", key, "rb"), (rb) => rb?.startsWith("r") ?? false))
        return { a, b, control, redis, inTable, rebuilding }
      })

    it.live("a commit after Redis lost everything (a restart) is charged, and written, once", () =>
      capturingLogs(() =>
        Effect.gen(function*() {
          const { a, inTable, redis } = yield* twoProcesses({ name: "org", tokenCap: 10_000 }, 0)
          const team = yield* a.child("team")
          yield* team.record({ tokens: 10 })
          yield* eventually("drained", Effect.map(inTable("org"), (tokens) => tokens === 10))
          yield* Effect.scoped(Effect.gen(function*() {
            const hold = yield* team.reserve({ tokens: 100 })
            yield* redis.send("FLUSHALL") // the test's own server: a restart without persistence
            yield* Effect.exit(hold.commit({ tokens: 60 }))
          }))
          yield* eventually("charged where it was rebuilt", Effect.map(team.snapshot, (s) => s.tokensUsed === 70))
          yield* eventually("written", Effect.map(inTable("org"), (tokens) => tokens === 70))
          assert.strictEqual((yield* a.snapshot).tokensUsed, 70)
        })
      ))

    it.live("a commit while another process rebuilds the level is charged to it once", () =>
      capturingLogs(() =>
        Effect.gen(function*() {
          const { a, b, inTable, rebuilding, redis } = yield* twoProcesses({ name: "org", tokenCap: 10_000 }, 400)
          const teamA = yield* a.child("team")
          const teamB = yield* b.child("team")
          yield* teamB.record({ tokens: 10 })
          yield* eventually("drained", Effect.map(inTable("org"), (tokens) => tokens === 10))
          const rebuilt = yield* Effect.scoped(Effect.gen(function*() {
            const hold = yield* teamB.reserve({ tokens: 100 })
            yield* redis.send("DEL", "budget:{org}:n:org/team")
            const rebuild = yield* Effect.forkChild(teamA.snapshot, { startImmediately: true })
            yield* rebuilding("budget:{org}:n:org/team")
            yield* hold.commit({ tokens: 60 })
            return rebuild
          }))
          yield* Fiber.join(rebuilt)
          assert.deepStrictEqual([(yield* teamA.snapshot).tokensUsed, (yield* a.snapshot).tokensUsed], [70, 70])
          yield* eventually("written", Effect.map(inTable("org"), (tokens) => tokens === 70))
        })
      ))

    it.live("a reset before the loss is kept: the rebuild counts from it", () =>
      capturingLogs(() =>
        Effect.gen(function*() {
          const { a, inTable, redis } = yield* twoProcesses({ name: "org", tokenCap: 10_000 }, 0)
          yield* a.record({ tokens: 100 })
          yield* a.reset
          yield* a.record({ tokens: 10 })
          yield* eventually("drained", Effect.map(inTable("org"), (tokens) => tokens === 110))
          yield* redis.send("DEL", "budget:{org}:n:org")
          assert.strictEqual((yield* a.snapshot).tokensUsed, 10)
        })
      ))

    it.live("a new child opened by two processes at once: the second waits for the first's rebuild, not refused", () =>
      capturingLogs(() =>
        Effect.gen(function*() {
          const { a, b, rebuilding } = yield* twoProcesses({ name: "org", tokenCap: 10_000 }, 400)
          const first = yield* Effect.forkChild(Effect.flatMap(a.child("new"), (c) => c.record({ tokens: 1 })), {
            startImmediately: true
          })
          yield* rebuilding("budget:{org}:n:org/new")
          yield* Effect.flatMap(b.child("new"), (c) => c.record({ tokens: 1 }))
          yield* Fiber.join(first)
          assert.strictEqual((yield* a.snapshot).tokensUsed, 2)
        })
      ))

    it.live("a commit sent again while its level is being rebuilt is charged to it once", () =>
      capturingLogs(() =>
        Effect.gen(function*() {
          const { a, control, inTable, redis } = yield* twoProcesses({ name: "org", tokenCap: 10_000 }, 0)
          const team = yield* a.child("team")
          yield* team.record({ tokens: 10 })
          yield* eventually("drained", Effect.map(inTable("org"), (tokens) => tokens === 10))
          const key = "budget:{org}:n:org/team"
          yield* Effect.scoped(Effect.gen(function*() {
            const hold = yield* team.reserve({ tokens: 100 })
            yield* redis.send("DEL", key)
            // its first settle skips the lost level; the rebuild it asks for fails
            control.down = true
            assert.strictEqual((yield* Effect.flip(hold.commit({ tokens: 60 })))._tag, "BudgetUnavailable")
            control.down = false
            const abandoned = yield* redis.send<string>("HGET", key, "rb")
            // once that rebuild's time ran out, the level is made again and rebuilt, slowly
            control.slowMillis = 400
            const rebuild = yield* Effect.forkChild(team.snapshot, { startImmediately: true })
            yield* eventually(
              "rebuilt again",
              Effect.map(redis.send<string | null>("HGET", key, "rb"), (rb) => rb !== abandoned && rb!.startsWith("r"))
            )
            // sent again meanwhile (a retry, or its closing scope)
            yield* hold.commit({ tokens: 60 })
            yield* Fiber.join(rebuild)
          }))
          assert.strictEqual((yield* team.snapshot).tokensUsed, 70)
          yield* eventually("written once", Effect.map(inTable("org"), (tokens) => tokens === 70))
        })
      ))
  })

  it.effect("a rebuild's sum is not added once its window ended (its generation moved on)", () =>
    Effect.gen(function*() {
      const server = yield* ownRedis()
      const redis = Context.get(yield* Layer.build(Layer.orDie(NodeRedis.layer({ url: server.url }))), Redis.Redis)
      yield* redis.send("HSET", "t:n:a", "rb", "r123", "gen", "123", "tu", "5")
      yield* redis.send("HSET", "t:n:b", "rb", "r123", "gen", "124", "tu", "5")
      assert.strictEqual(yield* redis.eval(Scripts.restore)("t:n:a", "123", 100, 0), 1)
      assert.strictEqual(yield* redis.eval(Scripts.restore)("t:n:b", "123", 100, 0), 1)
      assert.deepStrictEqual(yield* redis.send("HMGET", "t:n:a", "tu", "rb"), ["105", "d123"])
      assert.deepStrictEqual(yield* redis.send("HMGET", "t:n:b", "tu", "rb"), ["5", "d123"])
      // another making's rebuild: nothing
      assert.strictEqual(yield* redis.eval(Scripts.restore)("t:n:a", "99", 100, 0), 0)
    }))
})