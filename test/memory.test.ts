import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { Budget, BudgetStore } from "../src/index.ts"
import { BudgetStoreContract } from "../src/testing.ts"

const memory = { name: "the memory store", make: Budget.make }
// A child keeps the same contract: its caps are the ones that bind, under
// ancestors without caps of their own.
const child = BudgetStoreContract.grandchild(memory)

BudgetStoreContract.contract(memory)
BudgetStoreContract.properties(memory, { limits: "TestClock" })
BudgetStoreContract.contract(child)
BudgetStoreContract.properties(child, { limits: "TestClock" })
BudgetStoreContract.treeProperties(memory)

describe("the memory store", () => {
  it.effect("two budgets opened with one name on one store share their counters, with the options given last", () =>
    Effect.gen(function*() {
      const store = yield* BudgetStore.BudgetStore
      const first = yield* Budget.makeFromStore({ name: "shared", tokenCap: 100 })
      yield* first.record({ tokens: 60 })
      const second = yield* Budget.makeFromStore({ name: "shared", tokenCap: 80 })
      const error = yield* Effect.flip(second.record({ tokens: 30 }))
      assert.strictEqual(error._tag === "BudgetExceeded" && error.cap, 80)
      assert.strictEqual((yield* first.snapshot).tokensUsed, 60)
      const other = yield* Budget.makeFromStore({ name: "other" }).pipe(Effect.provideService(BudgetStore.BudgetStore, store))
      assert.strictEqual((yield* other.snapshot).tokensUsed, 0)
    }).pipe(Effect.provide(BudgetStore.layerMemory)))
})
