/**
 * The ledger on the memory store: every charge is one entry, handed to the
 * sink in the charge's step, with its labels; a sink that is down keeps
 * entries in the outbox until it answers; the outbox's bound refuses new
 * charges, never a commit.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Metric, Scope } from "effect"
import { TestClock } from "effect/testing"
import { Budget, type BudgetEvent, type BudgetOptions, Ledger, LedgerUnavailable, usdToNanos } from "../src/index.ts"
import { yields as settle } from "../src/BudgetStoreContract.ts"
import { capturingLogs } from "../src/internal/testing/logs.ts"
import { collectingSink } from "./support/ledgerSink.ts"
import { Stream } from "effect"

const withLedger = (options: BudgetOptions, sinkOptions: Ledger.SinkOptions = {}) =>
  Effect.gen(function*() {
    const collected = yield* collectingSink(sinkOptions)
    const budget = yield* Budget.make(options).pipe(Effect.provideService(Ledger.Sink, collected.sink))
    return { budget, ...collected }
  })

/** Polls the scheduler until `done` holds: the drain runs as a fiber of its own. */
const until = (done: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1_000 && !done(); i++) yield* settle
    assert.isTrue(done(), "the outbox drained")
  })

describe("ledger (memory store)", () => {
  it.effect("every record and commit is one entry with its labels; a release is none", () =>
    Effect.gen(function*() {
      const { budget, state } = yield* withLedger({ name: "org", tokenCap: 1_000, usdCap: 10 })
      yield* budget.record({ tokens: 10, usd: 0.01 }, { labels: { model: "gpt-5-mini", user: "ada" } })
      yield* Effect.scoped(Effect.gen(function*() {
        const r = yield* budget.reserve({ tokens: 100, usd: 0.1 }, { labels: { feature: "search" } })
        assert.deepStrictEqual(r.labels, { feature: "search" })
        yield* r.commit({ tokens: 40, usd: 0.04 })
      }))
      yield* Effect.scoped(budget.reserve({ tokens: 5 }, { labels: { feature: "released" } }))
      yield* until(() => state.written.size === 2)
      const entries = [...state.written.values()]
      assert.deepStrictEqual(
        entries.map(({ budget, estimated, kind, labels, nanos, nanosOverage, tokens, tokensOverage }) => ({
          budget,
          kind,
          tokens,
          nanos,
          tokensOverage,
          nanosOverage,
          estimated,
          labels
        })),
        [
          {
            budget: "org",
            kind: "record",
            tokens: 10,
            nanos: 10_000_000,
            tokensOverage: 0,
            nanosOverage: 0,
            estimated: false,
            labels: { model: "gpt-5-mini", user: "ada" }
          },
          {
            budget: "org",
            kind: "commit",
            tokens: 40,
            nanos: 40_000_000,
            tokensOverage: 0,
            nanosOverage: 0,
            estimated: false,
            labels: { feature: "search" }
          }
        ]
      )
      assert.notStrictEqual(entries[0]!.id, entries[1]!.id)
      const snap = yield* budget.snapshot
      assert.deepStrictEqual([snap.tokensUsed, usdToNanos(snap.usdUsed)], [50, 50_000_000])
    }))

  it.effect("a retried record and a retried commit are one entry; a late commit after a release is one", () =>
    Effect.gen(function*() {
      const { budget, state } = yield* withLedger({ name: "org" })
      yield* budget.record({ tokens: 7 }, { id: "req-1" })
      yield* budget.record({ tokens: 7 }, { id: "req-1" })
      const scope = yield* Scope.make()
      const r = yield* budget.reserve({ tokens: 20 }).pipe(Scope.provide(scope))
      yield* r.commit({ tokens: 15 })
      yield* r.commit({ tokens: 15 })
      const late = yield* budget.reserve({ tokens: 20 }).pipe(Scope.provide(scope))
      yield* late.release
      yield* capturingLogs(() => late.commit({ tokens: 3 }))
      yield* Scope.close(scope, Exit.void)
      yield* until(() => state.written.size === 3)
      yield* settle
      assert.deepStrictEqual([...state.written.values()].map((e) => [e.kind, e.tokens]), [["record", 7], ["commit", 15], [
        "commit",
        3
      ]])
      assert.strictEqual((yield* budget.snapshot).tokensUsed, 25)
    }))

  it.effect("a commit's overage and an estimated commit are in its entry; its window's end too", () =>
    Effect.gen(function*() {
      const { budget, state } = yield* withLedger({ name: "org", tokenCap: 100, window: "1 hour" })
      yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 5 }), (r) => r.commit()))
      yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 90 }), (r) => r.commit({ tokens: 130 })))
      yield* until(() => state.written.size === 2)
      const [estimated, over] = [...state.written.values()]
      assert.deepStrictEqual([over!.tokens, over!.tokensOverage, over!.windowEndsAt, over!.at], [130, 35, 3_600_000, 0])
      assert.isTrue(estimated!.estimated)
    }))

  it.effect("labels reach the events", () =>
    Effect.gen(function*() {
      const { budget } = yield* withLedger({ name: "org" })
      const seen: Array<BudgetEvent> = []
      const fiber = yield* Effect.forkChild(Stream.runForEach(budget.events, (e) => Effect.sync(() => seen.push(e))))
      yield* settle
      yield* budget.record({ tokens: 1 }, { labels: { user: "ada" } })
      yield* Effect.scoped(Effect.flatMap(budget.reserve({ tokens: 2 }, { labels: { user: "bob" } }), (r) => r.commit()))
      yield* budget.record({ tokens: 3 })
      yield* settle
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(seen.map((e) => [e._tag, "labels" in e ? e.labels : undefined]), [
        ["Recorded", { user: "ada" }],
        ["Reserved", { user: "bob" }],
        ["Committed", { user: "bob" }],
        ["Recorded", undefined]
      ])
    }))

  it.effect("bad labels fail with InvalidUsage naming the field and the value, and change nothing", () =>
    Effect.gen(function*() {
      const { budget, state } = yield* withLedger({ name: "org" })
      const notString = yield* Effect.flip(budget.record({ tokens: 1 }, { labels: { model: 5 as unknown as string } }))
      assert.strictEqual(notString.message, "Invalid labels.model: must be a string of at most 1024 characters, got 5")
      const notObject = yield* Effect.flip(Effect.scoped(budget.reserve({ tokens: 1 }, { labels: "gpt" as never })))
      assert.strictEqual(notObject._tag, "InvalidUsage")
      assert.include(notObject.message, "Invalid labels: must be an object of strings by name")
      const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`l${i}`, "x"]))
      const tooMany = yield* Effect.flip(budget.record({ tokens: 1 }, { labels: many }))
      assert.include(tooMany.message, "must have at most 64 labels")
      // What no sink could store: refused here, not retried by the outbox for ever.
      const nul = yield* Effect.flip(budget.record({ tokens: 1 }, { labels: { user: "evil\u0000" } }))
      assert.include(nul.message, "Invalid labels.user: must be Unicode text without NUL characters")
      const surrogate = yield* Effect.flip(budget.record({ tokens: 1 }, { labels: { ["\ud800"]: "x" } }))
      assert.include(surrogate.message, "without NUL characters or lone surrogates")
      const badId = yield* Effect.flip(budget.record({ tokens: 1 }, { id: "req\u0000" }))
      assert.include(badId.message, "Invalid id: must be Unicode text without NUL")
      const badName = yield* Effect.flip(Effect.scoped(budget.child("a\udc00")))
      assert.include(badName.message, "Invalid name: must be Unicode text without NUL")
      const map = yield* Effect.flip(budget.record({ tokens: 1 }, { labels: new Map([["user", "ada"]]) as never }))
      assert.include(map.message, "Invalid labels: must be an object of strings by name")
      const symbol = yield* Effect.flip(budget.record({ tokens: 1 }, { labels: { [Symbol("s")]: "x" } as never }))
      assert.include(symbol.message, "Invalid labels: must be an object of strings by name")
      yield* settle
      assert.strictEqual((yield* budget.snapshot).tokensUsed, 0)
      assert.strictEqual(state.written.size, 0)
    }))

  it.effect("a label named __proto__ is a label like any other", () =>
    Effect.gen(function*() {
      const { budget, state } = yield* withLedger({ name: "org" })
      const labels = JSON.parse("{\"__proto__\":\"tenant-a\",\"model\":\"m\"}")
      const hold = yield* Effect.scoped(budget.reserve({ tokens: 1 }, { labels }))
      assert.deepStrictEqual(Object.keys(hold.labels).sort(), ["__proto__", "model"])
      yield* budget.record({ tokens: 1 }, { labels })
      yield* until(() => state.written.size === 1)
      assert.deepStrictEqual(JSON.parse(JSON.stringify([...state.written.values()][0]!.labels)), {
        ["__proto__"]: "tenant-a",
        model: "m"
      })
    }))

  it.effect("a sink that is down: entries wait in the outbox, then drain once, when it answers", () =>
    capturingLogs((lines) =>
      Effect.gen(function*() {
        const { budget, state, sums } = yield* withLedger({ name: "org" }, { batchSize: 3 })
        state.down = true
        for (let i = 0; i < 10; i++) yield* budget.record({ tokens: i })
        yield* settle
        assert.strictEqual(state.written.size, 0)
        assert.isTrue(lines.some((l) => l.level === "Warn" && l.text.includes("did not take a batch")))
        state.down = false
        // the backoff is on Clock
        for (let i = 0; i < 20 && state.written.size < 10; i++) {
          yield* TestClock.adjust("10 seconds")
          yield* settle
        }
        assert.strictEqual(state.written.size, 10)
        assert.strictEqual(state.again, 0)
        assert.deepStrictEqual(sums(), { tokens: 45, nanos: 0 })
        assert.isTrue(lines.some((l) => l.level === "Info" && l.text.includes("takes entries again")))
      })
    ))

  it.effect("a sink whose write decides when it is called (not when run) is called again for each attempt", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        let down = true
        const taken: Array<Ledger.Entry> = []
        const sink = yield* Ledger.makeSink("decides", (entries) =>
          down
            ? Effect.fail(new LedgerUnavailable({ sink: "decides", cause: new Error("down") }))
            : Effect.sync(() => taken.push(...entries)))
        const budget = yield* Budget.make({ name: "org" }).pipe(Effect.provideService(Ledger.Sink, sink))
        yield* budget.record({ tokens: 1 })
        yield* settle
        down = false
        for (let i = 0; i < 20 && taken.length === 0; i++) {
          yield* TestClock.adjust("10 seconds")
          yield* settle
        }
        assert.strictEqual(taken.length, 1)
      })
    ))

  it.effect("the backlog gauge counts the entries waiting, during an outage too", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { budget, state } = yield* withLedger({ name: "org" })
        const backlog = Effect.map(Metric.snapshot, (all) => {
          const gauge = all.find((s) => s.id === "budget_ledger_backlog" && s.attributes?.["sink"] === "test")
          return gauge !== undefined && "value" in gauge.state ? gauge.state.value : undefined
        })
        yield* budget.record({ tokens: 1 })
        yield* until(() => state.written.size === 1)
        assert.strictEqual(yield* backlog, 0)
        state.down = true
        for (let i = 0; i < 50; i++) yield* budget.record({ tokens: 1 })
        yield* TestClock.adjust("1 minute")
        assert.strictEqual(yield* backlog, 50)
      })
    ))

  it.live("a sink that never answers does not hold the store's close for ever: its entries are logged", () =>
    capturingLogs((lines) =>
      Effect.gen(function*() {
        const hanging = yield* Ledger.makeSink("hangs", () => Effect.never)
        yield* Effect.scoped(Effect.gen(function*() {
          const budget = yield* Budget.make({ name: "org" }).pipe(Effect.provideService(Ledger.Sink, hanging))
          yield* budget.record({ tokens: 1 })
        }))
        const error = lines.find((l) => l.level === "Error")
        assert.include(error?.text, "1 ledger entries were not written as the store closed")
        assert.include(error?.text, "no answer within 5000 ms")
      })
    ))

  it.effect("at maxBacklog new charges are refused with BudgetUnavailable; commits are charged and written", () =>
    capturingLogs(() =>
      Effect.gen(function*() {
        const { budget, state } = yield* withLedger({ name: "org" }, { maxBacklog: 3 })
        state.down = true
        const scope = yield* Scope.make()
        const held = yield* budget.reserve({ tokens: 10 }).pipe(Scope.provide(scope))
        yield* budget.record({ tokens: 1 })
        yield* budget.record({ tokens: 1 })
        yield* budget.record({ tokens: 1 })
        const refused = yield* Effect.flip(budget.record({ tokens: 1 }))
        assert.strictEqual(refused._tag, "BudgetUnavailable")
        assert.include(refused.message, "outbox holds 3 entries that sink \"test\" has not taken")
        const refusedHold = yield* Effect.flip(Effect.scoped(budget.reserve({ tokens: 1 }, { onExceeded: "wait" })))
        assert.strictEqual(refusedHold._tag, "BudgetUnavailable")
        yield* held.commit({ tokens: 4 })
        yield* Scope.close(scope, Exit.void)
        assert.strictEqual((yield* budget.snapshot).tokensUsed, 7)
        state.down = false
        for (let i = 0; i < 20 && state.written.size < 4; i++) {
          yield* TestClock.adjust("10 seconds")
          yield* settle
        }
        assert.strictEqual(state.written.size, 4)
        yield* budget.record({ tokens: 1 })
      })
    ))

  it.effect("a sink that takes every batch keeps up with records made back to back: the outbox never reaches its bound", () =>
    Effect.gen(function*() {
      // The charging fiber makes about a thousand records each time it
      // yields; the drain must hand over all of them in its turn, not one
      // batch, or the outbox grows until charges are refused.
      const { budget, state } = yield* withLedger({ name: "org" }, { batchSize: 100, maxBacklog: 5_000 })
      let left = 50_000
      yield* Effect.whileLoop({ while: () => left-- > 0, body: () => budget.record({ tokens: 1 }), step: () => {} })
      yield* until(() => state.written.size === 50_000)
      assert.strictEqual((yield* budget.snapshot).tokensUsed, 50_000)
    }))

  it.effect("a charge does not run the hand-over in its own step: the drain takes its entry in a turn of its own", () =>
    Effect.gen(function*() {
      const { budget, state } = yield* withLedger({ name: "org" })
      yield* settle
      yield* budget.record({ tokens: 1 })
      yield* budget.record({ tokens: 2 })
      assert.strictEqual(state.batches, 0)
      yield* until(() => state.written.size === 2)
      assert.strictEqual(state.batches, 1)
    }))

  it.effect("the store's close hands over what is left; with the sink down, it logs the entries as an error", () =>
    capturingLogs((lines) =>
      Effect.gen(function*() {
        const collected = yield* collectingSink()
        yield* Effect.scoped(Effect.gen(function*() {
          const budget = yield* Budget.make({ name: "org" }).pipe(Effect.provideService(Ledger.Sink, collected.sink))
          yield* budget.record({ tokens: 3 })
        }))
        assert.strictEqual(collected.state.written.size, 1)
        collected.state.down = true
        yield* Effect.scoped(Effect.gen(function*() {
          const budget = yield* Budget.make({ name: "org" }).pipe(Effect.provideService(Ledger.Sink, collected.sink))
          yield* budget.record({ tokens: 4 })
        }))
        const error = lines.find((l) => l.level === "Error")
        assert.include(error?.text, "1 ledger entries were not written as the store closed")
        assert.include(error?.text, "\"tokens\":4")
      })
    ))

  it.effect("1,000 fibers with labels, interrupted anywhere: the ledger's sums equal the counters, each id once", () =>
    Effect.gen(function*() {
      const { budget, state, sums } = yield* withLedger({ name: "org", tokenCap: 50_000, usdCap: 50 }, {
        batchSize: 64
      })
      const child = yield* budget.child("team")
      const fibers = yield* Effect.forEach(Array.from({ length: 1_000 }, (_, i) => i), (i) => {
        const target = i % 2 === 0 ? budget : child
        const labels = { user: `u${i % 7}`, request: `r${i}` }
        const work = i % 3 === 0
          ? target.record({ tokens: i % 50, usd: (i % 13) / 1_000 }, { labels })
          : Effect.scoped(Effect.gen(function*() {
            const r = yield* target.reserve({ tokens: 60, usd: 0.02 }, { labels, onExceeded: "wait" })
            yield* Effect.yieldNow
            if (i % 3 === 1) yield* r.commit({ tokens: i % 90, usd: (i % 17) / 1_000 })
          }))
        return Effect.forkChild(Effect.exit(work))
      })
      yield* Effect.forEach(fibers.filter((_, i) => i % 11 === 0), Fiber.interrupt, { discard: true })
      yield* Fiber.awaitAll(fibers)
      const snap = yield* budget.snapshot
      yield* until(() => sums().tokens === snap.tokensUsed)
      assert.deepStrictEqual(sums(), { tokens: snap.tokensUsed, nanos: usdToNanos(snap.usdUsed) })
      assert.strictEqual(state.again, 0)
      for (const entry of state.written.values()) {
        assert.match(entry.labels.request!, /^r\d+$/)
        assert.oneOf(entry.budget, ["org", "org/team"])
      }
    }))
})

