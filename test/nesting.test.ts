import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Metric } from "effect"
import { Budget, type BudgetExceeded, type BudgetService, type BudgetUnavailable, type InvalidUsage } from "../src/index.ts"
import { TestClock } from "effect/testing"
import { yields as settle } from "../src/BudgetStoreContract.ts"

const flipExceeded = <A, E>(effect: Effect.Effect<A, E, never>) =>
  Effect.map(Effect.flip(effect), (error) => {
    assert.strictEqual((error as { _tag: string })._tag, "BudgetExceeded")
    return error as { readonly budget: string; readonly axis: string; readonly message: string }
  })

const counters = (budget: BudgetService) =>
  Effect.map(budget.snapshot, (s) => [s.tokensUsed, s.tokensReserved] as const)

/** Series in the metric registry labelled with a budget under `prefix`. */
const seriesUnder = (prefix: string) =>
  Effect.map(
    Metric.snapshot,
    (series) => series.filter((s) => String(s.attributes?.["budget"] ?? "").startsWith(prefix)).length
  )

describe("nested budgets", () => {
  it.effect("a charge counts at every level, and a refusal at any level changes none", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org", tokenCap: 1000 })
      const tenant = yield* org.child("tenant-a", { tokenCap: 300 })
      const agent = yield* tenant.child("agent-7", { tokenCap: 100 })
      assert.strictEqual(agent.path, "org/tenant-a/agent-7")

      yield* agent.record({ tokens: 60 })
      yield* Effect.scoped(Effect.flatMap(agent.reserve({ tokens: 30 }), (r) => r.commit({ tokens: 20 })))
      yield* tenant.record({ tokens: 100 })
      assert.deepStrictEqual(yield* counters(agent), [80, 0])
      assert.deepStrictEqual(yield* counters(tenant), [180, 0])
      assert.deepStrictEqual(yield* counters(org), [180, 0])

      // the agent's own cap refuses first
      const byAgent = yield* flipExceeded(agent.record({ tokens: 21 }))
      assert.strictEqual(byAgent.budget, "org/tenant-a/agent-7")
      assert.include(byAgent.message, `Budget "org/tenant-a/agent-7" refused 21 tokens`)
      // the tenant refuses what the agent alone would allow
      const sibling = yield* tenant.child("agent-8")
      yield* sibling.record({ tokens: 110 })
      const byTenant = yield* flipExceeded(agent.record({ tokens: 15 }))
      assert.strictEqual(byTenant.budget, "org/tenant-a")
      // and the org what both would allow
      yield* org.record({ tokens: 705 })
      yield* agent.record({ tokens: 5 })
      const byOrg = yield* flipExceeded(agent.record({ tokens: 1 }))
      assert.strictEqual(byOrg.budget, "org")
      assert.deepStrictEqual(yield* counters(agent), [85, 0])
      assert.deepStrictEqual(yield* counters(tenant), [295, 0])
      assert.deepStrictEqual(yield* counters(org), [1000, 0])
    }))

  it.effect("a hold is taken, released and settled at every level", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org", tokenCap: 1000, usdCap: 10 })
      const agent = yield* Effect.flatMap(org.child("tenant"), (t) => t.child("agent"))
      const fiber = yield* Effect.forkChild(Effect.scoped(Effect.andThen(agent.reserve({ tokens: 40, usd: 1 }), Effect.never)))
      yield* settle
      assert.deepStrictEqual(yield* counters(org), [0, 40])
      yield* Fiber.interrupt(fiber)
      const snap = yield* org.snapshot
      assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved], [0, 0])
    }))

  it.effect("the same name under the same parent reaches the same counters, with the latest options", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org" })
      const first = yield* org.child("tenant-a", { tokenCap: 100 })
      yield* first.record({ tokens: 70 })
      const again = yield* org.child("tenant-a", { tokenCap: 200 })
      const snap = yield* again.snapshot
      assert.deepStrictEqual([snap.tokensUsed, snap.tokenCap], [70, 200])
      yield* first.record({ tokens: 100 })
      assert.strictEqual((yield* org.snapshot).tokensUsed, 170)
    }))

  it.effect("layerChild provides a child of the Budget in context", () =>
    Effect.gen(function*() {
      const Org = Budget.layer({ name: "org", usdCap: 10 })
      const TenantA = Budget.layerChild("tenant-a", { usdCap: 1 })
      const spend = Effect.gen(function*() {
        const budget = yield* Budget
        yield* budget.record({ usd: 0.75 })
        return budget.path
      })
      const program = Effect.gen(function*() {
        const path = yield* Effect.provide(spend, TenantA)
        const org = yield* Budget
        const tenant = yield* org.child("tenant-a")
        return [path, (yield* org.snapshot).usdUsed, (yield* tenant.snapshot).usdUsed] as const
      })
      assert.deepStrictEqual(yield* Effect.provide(program, Org), ["org/tenant-a", 0.75, 0.75])
      const refused = yield* Effect.flip(Effect.provide(spend, Layer.provide(Budget.layerChild("x", { usdCap: 0.5 }), Org)))
      assert.strictEqual(refused._tag, "BudgetExceeded")
    }))

  it.effect("bad names and caps fail with InvalidUsage", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org" })
      for (const [name, options] of [["", {}], ["a/b", {}], ["ok", { tokenCap: -1 }], ["ok", { thresholds: [1.5] }]] as const) {
        const error = yield* Effect.flip(org.child(name, options))
        assert.strictEqual(error._tag, "InvalidUsage")
      }
      const bad = yield* Effect.flip(Budget.make({ name: "x/y" }))
      assert.include(bad.message, "Invalid name")
    }))

  it.effect("10,000 fibers across 50 children: no level past its cap, children sum to the parent", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org", tokenCap: 20_000, usdCap: 20 })
      const tenants = yield* Effect.forEach(
        Array.from({ length: 50 }, (_, i) => i),
        (i) => org.child(`tenant-${i}`, { tokenCap: 500 + 10 * i, usdCap: 1 })
      )
      let peak = 0
      const refusals = new Set<string>()
      const watch = Effect.flatMap(org.snapshot, (s) =>
        Effect.sync(() => {
          peak = Math.max(peak, s.tokensUsed + s.tokensReserved)
        }))
      yield* Effect.forEach(
        Array.from({ length: 10_000 }, (_, i) => i),
        (i) => {
          const tenant = tenants[i % 50]!
          const call: Effect.Effect<void, string | BudgetExceeded | InvalidUsage | BudgetUnavailable> = i % 3 === 0
            ? tenant.record({ tokens: 7, usd: 0.007 })
            : Effect.scoped(Effect.gen(function*() {
              const r = yield* tenant.reserve({ tokens: 9, usd: 0.009 })
              yield* watch
              yield* Effect.yieldNow
              if (i % 7 === 0) return yield* Effect.fail("the call failed")
              yield* r.commit({ tokens: 5, usd: 0.005 })
            }))
          return call.pipe(
            Effect.catchTag("BudgetExceeded", (e) => Effect.sync(() => refusals.add(e.budget))),
            Effect.exit,
            Effect.andThen(watch)
          )
        },
        { concurrency: "unbounded", discard: true }
      )
      assert.isAtMost(peak, 20_000)
      const snaps = yield* Effect.forEach(tenants, (t) => t.snapshot)
      for (const snap of snaps) {
        assert.isAtMost(snap.tokensUsed, snap.tokenCap)
        assert.isAtMost(snap.usdUsed, snap.usdCap)
        assert.strictEqual(snap.tokensReserved, 0)
      }
      const root = yield* org.snapshot
      assert.strictEqual(root.tokensReserved, 0)
      assert.strictEqual(snaps.reduce((sum, s) => sum + s.tokensUsed, 0), root.tokensUsed)
      assert.isAbove(root.tokensUsed, 10_000)
      assert.isTrue(refusals.has("org"), "the org ran out")
    }))

  it.effect("a waiter in a child wakes when an ancestor frees room", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org", tokenCap: 100 })
      const a = yield* org.child("a", { tokenCap: 100 })
      const b = yield* org.child("b")
      const held = yield* b.reserve({ tokens: 80 })
      const waiter = yield* Effect.forkChild(
        Effect.scoped(Effect.flatMap(a.reserve({ tokens: 50 }, { onExceeded: "wait" }), (r) => r.commit()))
      )
      yield* settle
      assert.isUndefined(waiter.pollUnsafe(), "a has room, org does not")
      yield* held.release
      yield* Fiber.join(waiter)
      assert.deepStrictEqual(yield* counters(org), [50, 0])
    }))

  it.effect("a waiter in a child wakes when the child frees room", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org", tokenCap: 1000 })
      const a = yield* org.child("a", { tokenCap: 100 })
      const held = yield* a.reserve({ tokens: 80 })
      const waiter = yield* Effect.forkChild(Effect.scoped(a.reserve({ tokens: 50 }, { onExceeded: "wait" })))
      yield* settle
      assert.isUndefined(waiter.pollUnsafe())
      yield* held.commit({ tokens: 30 })
      yield* Fiber.join(waiter)
    }))

  it.effect("waiters on a shared parent are served in arrival order, whichever child they come from", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org", tokenCap: 10 })
      const children = yield* Effect.forEach(["a", "b", "c"], (name) => org.child(name))
      const held = yield* org.reserve({ tokens: 10 })
      const order: Array<number> = []
      const fibers = []
      for (let i = 0; i < 12; i++) {
        fibers.push(yield* Effect.forkChild(children[i % 3]!.withReservation(
          { tokens: 1 + (i % 4) },
          (r) => Effect.andThen(Effect.sync(() => order.push(i)), r.commit({ tokens: 0 })),
          { onExceeded: "wait" }
        )))
        yield* Effect.yieldNow
      }
      yield* settle
      yield* held.release
      yield* Fiber.joinAll(fibers)
      assert.deepStrictEqual(order, Array.from({ length: 12 }, (_, i) => i))
    }))

  it.effect("a waiter held back by its own child's cap does not block a sibling's", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org", tokenCap: 100 })
      const a = yield* org.child("a", { tokenCap: 10 })
      const b = yield* org.child("b")
      yield* a.record({ tokens: 10 })
      const stuck = yield* Effect.forkChild(Effect.scoped(a.reserve({ tokens: 5 }, { onExceeded: "wait" })))
      yield* settle
      const free = yield* Effect.scoped(Effect.as(b.reserve({ tokens: 50 }, { onExceeded: "wait" }), "served"))
      assert.strictEqual(free, "served")
      assert.isUndefined(stuck.pollUnsafe())
      yield* Fiber.interrupt(stuck)
    }))

  it.effect("a waiter let through by its child but held back by an ancestor waits on the ancestor", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org", tokenCap: 100 })
      const a = yield* org.child("a", { tokenCap: 50 })
      const b = yield* org.child("b")
      yield* a.record({ tokens: 50 })
      yield* b.record({ tokens: 50 })
      const waiter = yield* Effect.forkChild(Effect.scoped(a.reserve({ tokens: 30 }, { onExceeded: "wait" })))
      yield* settle
      yield* a.reset // room in a, none in org
      yield* settle
      assert.isUndefined(waiter.pollUnsafe())
      yield* org.reset // now room in org: only its own line can tell the waiter
      yield* Fiber.join(waiter)
    }))

  it.effect("an earlier waiter passes a budget whose line holds only later ones", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org", tokenCap: 100 })
      const a = yield* org.child("a", { tokenCap: 10 })
      const b = yield* org.child("b")
      yield* a.record({ tokens: 10 })
      const early = yield* Effect.forkChild(Effect.scoped(a.reserve({ tokens: 5 }, { onExceeded: "wait" })))
      yield* settle
      // later, and too large for org's room: it waits in org's line
      const late = yield* Effect.forkChild(Effect.scoped(b.reserve({ tokens: 95 }, { onExceeded: "wait" })))
      yield* settle
      yield* a.reset
      yield* Fiber.join(early)
      assert.isUndefined(late.pollUnsafe())
      yield* Fiber.interrupt(late)
    }))

  it.effect("interrupting a waiter held back at an ancestor releases nothing it did not hold", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org", tokenCap: 100 })
      const a = yield* org.child("a")
      yield* org.reserve({ tokens: 100 })
      const waiter = yield* Effect.forkChild(Effect.scoped(a.reserve({ tokens: 10 }, { onExceeded: "wait" })))
      yield* settle
      yield* Fiber.interrupt(waiter)
      assert.deepStrictEqual(yield* counters(org), [0, 100])
      assert.deepStrictEqual(yield* counters(a), [0, 0])
    }))

  it.effect("nests to any depth", () =>
    Effect.gen(function*() {
      let budget = yield* Budget.make({ name: "root", tokenCap: 1_000 })
      for (let depth = 1; depth <= 8; depth++) budget = yield* budget.child(`level-${depth}`, { tokenCap: 1_000 - depth })
      assert.strictEqual(budget.path, "root/level-1/level-2/level-3/level-4/level-5/level-6/level-7/level-8")
      const error = yield* flipExceeded(budget.record({ tokens: 993 }))
      assert.strictEqual(error.budget, budget.path)
      yield* budget.record({ tokens: 992 })
    }))

  it.effect("100,000 children come and go; the registry keeps only those in use or holding usage", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org" })
      for (let i = 0; i < 100_000; i++) {
        yield* Effect.scoped(Effect.flatMap(org.child(`request-${i}`), (child) =>
          Effect.scoped(Effect.flatMap(child.reserve({ tokens: 1 }), (r) => r.commit({ tokens: 0 })))))
      }
      assert.strictEqual(yield* seriesUnder("org/"), 0, "every empty, unused child was dropped")

      // a child that holds usage stays, or its spend could be spent again
      yield* Effect.scoped(Effect.flatMap(org.child("spender"), (child) => child.record({ tokens: 5 })))
      assert.isAbove(yield* seriesUnder("org/spender"), 0)
      const back = yield* org.child("spender")
      assert.strictEqual((yield* back.snapshot).tokensUsed, 5)
    }))

  it.effect("50,000 one-shot children with usage are dropped once idle past their idleTtl; their spend stays in the parent", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org" })
      for (let i = 0; i < 50_000; i++) {
        yield* Effect.scoped(Effect.flatMap(org.child(`request-${i}`), (child) => child.record({ tokens: 1 })))
      }
      assert.isAtLeast(yield* seriesUnder("org/request-"), 50_000, "kept while idle less than an hour")
      yield* TestClock.adjust("1 hour")
      // the next lookup drops every child idle past its time-to-live
      yield* Effect.scoped(org.child("other"))
      assert.strictEqual(yield* seriesUnder("org/request-"), 0)
      assert.strictEqual((yield* org.snapshot).tokensUsed, 50_000)
      const again = yield* org.child("request-7")
      assert.strictEqual((yield* again.snapshot).tokensUsed, 0, "a child dropped forgets its usage")
    }))

  it.effect("idleTtl: Infinity keeps an idle child with usage; a bad idleTtl is InvalidUsage naming it", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org" })
      yield* Effect.scoped(Effect.flatMap(org.child("kept", { idleTtl: Infinity }), (child) => child.record({ tokens: 5 })))
      yield* TestClock.adjust("3650 days")
      yield* Effect.scoped(org.child("other"))
      assert.strictEqual((yield* (yield* org.child("kept")).snapshot).tokensUsed, 5)
      const error = yield* Effect.flip(org.child("bad", { idleTtl: -1 }))
      assert.strictEqual(error._tag, "InvalidUsage")
      assert.include(error.message, "idleTtl")
    }))

  it.effect("a used child without users is dropped once its window restarts it", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org" })
      yield* Effect.scoped(Effect.flatMap(org.child("daily", { window: "1 day" }), (c) => c.record({ tokens: 5 })))
      assert.isAbove(yield* seriesUnder("org/daily"), 0)
      yield* TestClock.adjust("1 day")
      // later lookups sweep idle children
      yield* Effect.scoped(org.child("other"))
      assert.strictEqual(yield* seriesUnder("org/daily"), 0)
    }))
})

describe("children and exits", () => {
  it.effect("a child's scope closing releases holds made through it", () =>
    Effect.gen(function*() {
      const org = yield* Budget.make({ name: "org", tokenCap: 10 })
      const exit = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
        const child = yield* org.child("c")
        yield* child.reserve({ tokens: 10 })
        return yield* Effect.fail("boom")
      })))
      assert.isTrue(Exit.isFailure(exit))
      assert.deepStrictEqual(yield* counters(org), [0, 0])
    }))
})
