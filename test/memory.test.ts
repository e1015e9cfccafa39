import { Effect } from "effect"
import { Budget } from "../src/index.ts"
import { contract } from "./contract.ts"
import { properties, treeProperties } from "./properties.ts"

const memory = { name: "the memory store", make: Budget.make }

// A child keeps the same contract: its caps are the ones that bind, under
// ancestors without caps of their own.
const child = {
  name: "a grandchild in the memory store",
  make: ({ name, ...options }: Parameters<typeof Budget.make>[0]) =>
    Budget.make({ name: "org" }).pipe(
      Effect.flatMap((org) => org.child("tenant")),
      Effect.flatMap((tenant) => tenant.child(name ?? "agent", options))
    )
}

contract(memory)
properties(memory)
contract(child)
properties(child)
treeProperties(memory)
