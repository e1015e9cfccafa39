/**
 * One process of the fleet report (bench/fleet.ts): opens the shared budget
 * in Redis and serves `record` and `cycle` (bench/workerLoop.ts).
 */
import { NodeRedis } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { Budget, maxUsd } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { actual, estimate } from "./workload.ts"
import { runWorker, serve } from "./workerLoop.ts"

const [url, prefix, name, inFlightArg] = process.argv.slice(2)

const program = Effect.gen(function*() {
  const budget = yield* Budget
  yield* serve({
    record: budget.record(estimate),
    cycle: Effect.scoped(Effect.flatMap(budget.reserve(estimate), (r) => r.commit(actual)))
  }, Number(inFlightArg))
})

const BudgetLive = RedisBudget.layer({ name: name!, tokenCap: Number.MAX_SAFE_INTEGER, usdCap: maxUsd }, { prefix: prefix! })
  .pipe(Layer.provide(Layer.orDie(NodeRedis.layer({ url: url! }))))

runWorker(Effect.provide(program, BudgetLive))
