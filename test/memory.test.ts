import { Budget } from "../src/index.ts"
import { contract } from "./contract.ts"

contract({ name: "the memory store", make: Budget.make })
