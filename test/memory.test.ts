import { Budget } from "../src/index.ts"
import { BudgetStoreContract } from "../src/testing.ts"

const memory = { name: "the memory store", make: Budget.make }
// A child keeps the same contract: its caps are the ones that bind, under
// ancestors without caps of their own.
const child = BudgetStoreContract.grandchild(memory)

BudgetStoreContract.contract(memory)
BudgetStoreContract.properties(memory)
BudgetStoreContract.contract(child)
BudgetStoreContract.properties(child)
BudgetStoreContract.treeProperties(memory)
