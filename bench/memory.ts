/**
 * What a child budget costs in memory while it lives: the heap grown by
 * 100,000 children held open at once, per child, with and without metrics;
 * what is left of 100,000 one-shot children with usage once idle past their
 * `idleTtl`; and the heap a stalled event subscriber grows while 500,000
 * records go by. The figures are printed below the table.
 */
import { Deferred, Effect, Exit, Fiber, Scope, Stream } from "effect"
import { Budget } from "../src/index.ts"

const children = 100_000

const collectGarbage: () => void = (globalThis as { gc?: () => void }).gc ?? (() => {})

const heapUsed = (): number => {
  collectGarbage()
  collectGarbage()
  return process.memoryUsage().heapUsed
}

/** Bytes of heap per child budget, each with a hold taken and settled. */
const bytesPerChild = (metrics: boolean) =>
  Effect.gen(function*() {
    const scope = yield* Scope.make()
    const org = yield* Effect.orDie(Budget.make({ name: "org", metrics })).pipe(Scope.provide(scope))
    const before = heapUsed()
    for (let i = 0; i < children; i++) {
      const child = yield* Effect.orDie(org.child(`agent-${i}`, { tokenCap: 1_000, metrics })).pipe(Scope.provide(scope))
      yield* Effect.orDie(child.record({ tokens: 1 }))
    }
    const after = heapUsed()
    yield* Scope.close(scope, Exit.void)
    return (after - before) / children
  })

/** Bytes of heap per one-shot child that recorded usage, once idle past its `idleTtl` and swept by a lookup. */
const bytesPerIdleChild = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const org = yield* Effect.orDie(Budget.make({ name: "org" })).pipe(Scope.provide(scope))
  const before = heapUsed()
  for (let i = 0; i < children; i++) {
    yield* Effect.orDie(Effect.scoped(Effect.flatMap(
      org.child(`request-${i}`, { tokenCap: 1_000, idleTtl: "1 millis" }),
      (child) => child.record({ tokens: 1 })
    )))
  }
  yield* Effect.sleep("2 millis")
  yield* Effect.orDie(Effect.scoped(org.child("next")))
  const after = heapUsed()
  yield* Scope.close(scope, Exit.void)
  return (after - before) / children
})

const records = 500_000

/** Bytes of heap grown while `records` records pass a subscriber that reads none of them. */
const stalledSubscriber = Effect.gen(function*() {
  const scope = yield* Scope.make()
  const org = yield* Effect.orDie(Budget.make({ name: "org" })).pipe(Scope.provide(scope))
  const never = yield* Deferred.make<void>()
  const reader = yield* Effect.forkChild(Stream.runForEach(org.events, () => Deferred.await(never)), {
    startImmediately: true
  })
  const before = heapUsed()
  for (let i = 0; i < records; i++) yield* Effect.orDie(org.record({ tokens: 1 }))
  const after = heapUsed()
  yield* Fiber.interrupt(reader)
  yield* Scope.close(scope, Exit.void)
  return after - before
})

const bytes = (n: number) => Math.round(n).toLocaleString("en-US")

export const memoryReport: Effect.Effect<string> = Effect.gen(function*() {
  const withMetrics = yield* bytesPerChild(true)
  const without = yield* bytesPerChild(false)
  const idle = yield* bytesPerIdleChild
  const stalled = yield* stalledSubscriber
  return `memory per child budget (${children.toLocaleString("en-US")} held at once): ` +
    `${bytes(withMetrics)} bytes with metrics, ${bytes(without)} bytes with metrics: false; ` +
    `${bytes(idle)} bytes per one-shot child with usage once idle past its idleTtl\n` +
    `heap grown by a subscriber that reads none of ${records.toLocaleString("en-US")} events: ` +
    `${(stalled / 1e6).toFixed(1)} MB (its buffer keeps the newest 10,000)`
})
