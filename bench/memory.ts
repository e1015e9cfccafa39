/**
 * What a child budget costs in memory while it lives: the heap grown by
 * 100,000 children held open at once, per child, with and without metrics.
 * An unused, empty child is dropped, so this is the cost of children in use
 * or holding usage; the figure is printed below the table.
 */
import { Effect, Exit, Scope } from "effect"
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

export const memoryReport: Effect.Effect<string> = Effect.gen(function*() {
  const withMetrics = yield* bytesPerChild(true)
  const without = yield* bytesPerChild(false)
  return `memory per child budget (${children.toLocaleString("en-US")} held at once): ` +
    `${Math.round(withMetrics).toLocaleString("en-US")} bytes with metrics, ` +
    `${Math.round(without).toLocaleString("en-US")} bytes with metrics: false`
})
