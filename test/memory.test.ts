import { Budget } from "../src/index.ts"
import { contract } from "./contract.ts"
import { properties } from "./properties.ts"

const memory = { name: "the memory store", make: Budget.make }

contract(memory)
properties(memory)
