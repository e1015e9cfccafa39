/**
 * One process of the fleet report (bench/fleet.ts): opens the shared budget
 * in Redis and prints `ready`; then, for each line `<operation> <millis>` on
 * stdin (`record` or `cycle`), keeps `inFlight` of that operation going for
 * `millis` and prints how many finished, and in how long, as one JSON line.
 * It exits when its stdin closes, so it never outlives the bench.
 */
import { NodeRedis } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { createInterface } from "node:readline"
import { Budget, maxUsd } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { actual, estimate } from "./workload.ts"

const [url, prefix, name, inFlightArg] = process.argv.slice(2)
const inFlight = Number(inFlightArg)

const commands = createInterface({ input: process.stdin })[Symbol.asyncIterator]()

/** Finished runs of `op`, `inFlight` at a time, until `millis` have passed. */
const runFor = (op: Effect.Effect<unknown, unknown>, millis: number) =>
  Effect.suspend(() => {
    const start = performance.now()
    let ops = 0
    const loop = Effect.whileLoop({
      while: () => performance.now() - start < millis,
      body: () => op,
      step: () => void ops++
    })
    return Effect.forEach(Array.from({ length: inFlight }), () => loop, { concurrency: "unbounded", discard: true }).pipe(
      Effect.map(() => ({ ops, millis: performance.now() - start }))
    )
  })

const program = Effect.gen(function*() {
  const budget = yield* Budget
  const operations: Record<string, Effect.Effect<unknown, unknown>> = {
    record: budget.record(estimate),
    cycle: Effect.scoped(Effect.flatMap(budget.reserve(estimate), (r) => r.commit(actual)))
  }
  console.log("ready")
  while (true) {
    const command = yield* Effect.promise(() => commands.next())
    if (command.done === true) return
    const [operation, millis] = command.value.split(" ")
    const op = operations[operation!]
    if (op === undefined) return yield* Effect.die(new Error(`unknown operation: ${command.value}`))
    console.log(JSON.stringify(yield* runFor(op, Number(millis))))
  }
})

const BudgetLive = RedisBudget.layer({ name: name!, tokenCap: Number.MAX_SAFE_INTEGER, usdCap: maxUsd }, { prefix: prefix! })
  .pipe(Layer.provide(Layer.orDie(NodeRedis.layer({ url: url! }))))

Effect.runPromise(Effect.provide(program, BudgetLive)).then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
