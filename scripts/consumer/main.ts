/**
 * A consumer of the published package, run by scripts/check-package.sh in a
 * fresh project outside the repository, against the packed tarball:
 *
 *   node out/main.js memory    # Budget.layer, and Pricing and TokenEstimate
 *   node out/main.js redis     # RedisBudget.layer over NodeRedis (REDIS_URL or 127.0.0.1:6379)
 *   node out/main.js postgres  # PgLedger.layer over PgClient (DATABASE_URL or postgres://postgres@127.0.0.1:5432/test)
 *
 * It imports only "effect-token-budget" and its peers, as a user would, and
 * exits non-zero when any result differs from what the contract says. It
 * imports the types of "effect-token-budget/testing" too, to prove that
 * entry resolves and type-checks; the suite itself runs only under vitest.
 */
import { NodeRedis } from "@effect/platform-node"
import { PgClient } from "@effect/sql-pg"
import { Effect, Exit, Layer, Redacted } from "effect"
import { Prompt, Response } from "effect/ai"
import * as Redis from "effect/persistence/Redis"
import {
  Budget,
  BudgetExceeded,
  InvalidUsage,
  Ledger,
  Pricing,
  type Settlement,
  type Snapshot,
  TokenEstimate
} from "effect-token-budget"
import { RedisBudget } from "effect-token-budget/redis"
import { PgLedger } from "effect-token-budget/sql-pg"
import type { BudgetStoreContract } from "effect-token-budget/testing"

// --- a tiny assertion kit -----------------------------------------------------

let passed = 0
const failures: Array<string> = []

const check = (label: string, actual: unknown, expected: unknown): Effect.Effect<void> =>
  Effect.sync(() => {
    if (Object.is(actual, expected)) {
      passed++
    } else {
      failures.push(`${label}: got ${String(actual)}, expected ${String(expected)}`)
      console.error(`  FAIL ${label}: got ${String(actual)}, expected ${String(expected)}`)
    }
  })

// Each field of `expected` against the same field of `actual`.
const checkFields = <A extends object>(label: string, actual: A, expected: Partial<A>): Effect.Effect<void> =>
  Effect.forEach(
    Object.keys(expected) as Array<keyof A>,
    (field) => check(`${label}: ${String(field)}`, actual[field], expected[field]),
    { discard: true }
  )

// --- the scenario, the same on every store ------------------------------------

const tokenCap = 10_000
const usdCap = 1

const scenario = Effect.gen(function*() {
  const budget = yield* Budget
  yield* check("path of the root", budget.path, "consumer")

  // usage that already happened
  yield* budget.record({ tokens: 1200, usd: 0.0036 })

  // one LLM call, one scope: reserve, then commit what it used
  const settlement = yield* Effect.scoped(Effect.gen(function*() {
    const hold = yield* budget.reserve({ tokens: 2000, usd: 0.012 })
    yield* check("hold.tokens", hold.tokens, 2000)
    yield* check("hold.usd", hold.usd, 0.012)
    yield* checkFields("while held", yield* budget.snapshot, { tokensReserved: 2000, usdReserved: 0.012 })
    return yield* hold.commit({ tokens: 1500, usd: 0.01 })
  }))
  yield* checkFields<Settlement>("scoped commit", settlement, {
    _tag: "Committed",
    tokens: 1500,
    usd: 0.01,
    tokensOverage: 0,
    usdOverage: 0
  })

  // a call that fails before its commit: closing the scope releases the hold
  const failed = yield* Effect.exit(Effect.scoped(Effect.gen(function*() {
    yield* budget.reserve({ tokens: 3000, usd: 0.5 })
    return yield* Effect.fail("the provider timed out")
  })))
  yield* check("a failed call fails", Exit.isFailure(failed), true)

  // withReservation: commit() with no actual charges what was held
  const held = yield* budget.withReservation({ tokens: 500, usd: 0.001 }, (hold) => hold.commit())
  yield* checkFields<Settlement>("withReservation commit()", held, {
    _tag: "Committed",
    tokens: 500,
    usd: 0.001,
    tokensOverage: 0,
    usdOverage: 0
  })

  // exact money: 0.0036 + 0.01 + 0.001 reads 0.0146, not 0.014600000000000002
  yield* checkFields("after the calls", yield* budget.snapshot, {
    name: "consumer",
    path: "consumer",
    tokensUsed: 3200,
    usdUsed: 0.0146,
    tokensReserved: 0,
    usdReserved: 0,
    tokenCap,
    usdCap,
    tokensRemaining: 6800,
    usdRemaining: 0.9854,
    windowEndsAt: undefined
  })

  // a refusal, caught by its tag; nothing changed
  const refusal = yield* budget.record({ tokens: 7000 }).pipe(
    Effect.as(undefined),
    Effect.catchTag("BudgetExceeded", (e) => Effect.succeed(e))
  )
  yield* check("BudgetExceeded is the exported class", refusal instanceof BudgetExceeded, true)
  if (refusal !== undefined) {
    yield* checkFields("BudgetExceeded", {
      _tag: refusal._tag,
      budget: refusal.budget,
      axis: refusal.axis,
      requested: refusal.requested,
      attempted: refusal.attempted,
      cap: refusal.cap,
      message: refusal.message
    }, {
      _tag: "BudgetExceeded",
      budget: "consumer",
      axis: "tokens",
      requested: 7000,
      attempted: 10200,
      cap: tokenCap,
      message: "Budget \"consumer\" refused 7000 tokens: used + reserved + requested would be 10200 tokens, " +
        "over its cap of 10000 tokens"
    })
  }
  yield* checkFields("after the refusal", yield* budget.snapshot, { tokensUsed: 3200, tokensReserved: 0 })

  // bad input, caught by its tag
  const invalid = yield* budget.record({ tokens: 1.5 }).pipe(
    Effect.as(undefined),
    Effect.catchTag("InvalidUsage", (e) => Effect.succeed(e))
  )
  yield* check("InvalidUsage is the exported class", invalid instanceof InvalidUsage, true)
  yield* check("InvalidUsage.field", invalid?.field, "usage.tokens")

  // a child budget made at run time: charged with its parent, refused by itself
  yield* Effect.scoped(Effect.gen(function*() {
    const agent = yield* budget.child("agent-1", { tokenCap: 1000 })
    yield* agent.record({ tokens: 400, usd: 0.002 })
    yield* checkFields("child", yield* agent.snapshot, {
      path: "consumer/agent-1",
      tokensUsed: 400,
      tokenCap: 1000,
      tokensRemaining: 600
    })
    const refused = yield* agent.record({ tokens: 700 }).pipe(
      Effect.as("charged"),
      Effect.catchTag("BudgetExceeded", (e) => Effect.succeed(`${e.budget} ${e.attempted}/${e.cap}`))
    )
    yield* check("the child refuses past its own cap", refused, "consumer/agent-1 1100/1000")
  }))

  // a child budget as a layer, over the Budget in context
  const tenant: Snapshot = yield* Effect.gen(function*() {
    const tenant = yield* Budget
    yield* tenant.record({ usd: 0.1 })
    const refused = yield* tenant.record({ usd: 0.2 }).pipe(
      Effect.as("charged"),
      Effect.catchTag("BudgetExceeded", (e) => Effect.succeed(`${e.budget} ${e.axis} ${e.cap}`))
    )
    yield* check("layerChild refuses past its own cap", refused, "consumer/tenant usd 0.25")
    return yield* tenant.snapshot
  }).pipe(Effect.provide(Budget.layerChild("tenant", { usdCap: 0.25 })))
  yield* checkFields("layerChild", tenant, { path: "consumer/tenant", usdUsed: 0.1, usdRemaining: 0.15 })

  // the root counts everything charged below it
  yield* checkFields("root after its children", yield* budget.snapshot, {
    tokensUsed: 3600,
    usdUsed: 0.1166,
    tokensReserved: 0,
    usdReserved: 0
  })

  yield* budget.reset
  yield* checkFields("after reset", yield* budget.snapshot, { tokensUsed: 0, usdUsed: 0 })
})

// --- pricing and estimates, from the main entry ------------------------------

const pricing = Effect.gen(function*() {
  const price = yield* Pricing.perMillionTokens({ "*": { input: 1, cacheRead: 0.1, output: 4 } })
  const usage = new Response.Usage({
    inputTokens: { uncached: 1000, cacheRead: 2000, total: 3000 },
    outputTokens: { total: 100 }
  })
  // 1000 × $1 + 2000 × $0.1 + 100 × $4 per million
  yield* check("Pricing.perMillionTokens", price(usage, "any-model"), 0.0016)
  const refused = yield* Pricing.perMillionTokens({}).pipe(
    Effect.as(undefined),
    Effect.catchTag("InvalidUsage", (e) => Effect.succeed(e.field))
  )
  yield* check("Pricing.perMillionTokens({}) fails", refused, "prices")
  // ⌈11 / 4⌉ + 4 for its one message
  yield* check("TokenEstimate.estimateInputTokens", TokenEstimate.estimateInputTokens(Prompt.make("hello world")), 7)
})

// --- the testing entry, as a store author types it ----------------------------

const underTest: BudgetStoreContract.StoreUnderTest = { name: "the memory store", make: Budget.make }
const testing = check("a StoreUnderTest over Budget.make", typeof underTest.make, "function")

// --- the stores -----------------------------------------------------------------

const memory: Effect.Effect<void, unknown> = Effect.andThen(
  Effect.andThen(pricing, testing),
  scenario.pipe(Effect.provide(Budget.layer({ name: "consumer", tokenCap, usdCap })))
)

const redisUrl = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379"
const prefix = `consumer-check:${process.pid}:${Date.now()}:`

// The keys this run wrote, found with SCAN: proof that the budget lived in Redis.
const keysOfThisRun: Effect.Effect<Array<string>, Redis.RedisError, Redis.Redis> = Effect.gen(function*() {
  const redis = yield* Redis.Redis
  const keys: Array<string> = []
  let cursor = "0"
  do {
    const [next, batch] = yield* redis.send<[string, Array<string>]>("SCAN", cursor, "MATCH", `${prefix}*`, "COUNT", "1000")
    keys.push(...batch)
    cursor = next
  } while (cursor !== "0")
  return keys
})

const redis: Effect.Effect<void, unknown> = Effect.gen(function*() {
  yield* scenario.pipe(
    Effect.provide(RedisBudget.layer({ name: "consumer", tokenCap, usdCap }, { prefix }))
  )
  const keys = yield* keysOfThisRun
  yield* check("the budget wrote its keys to Redis", keys.length > 0, true)
  const redis = yield* Redis.Redis
  if (keys.length > 0) yield* redis.send("DEL", ...keys)
}).pipe(Effect.provide(Layer.orDie(NodeRedis.layer({ url: redisUrl }))))

// --- the ledger in PostgreSQL ---------------------------------------------------

const databaseUrl = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/test"
// A table of this run's own, dropped at the end.
const ledgerTable = `consumer_check_${process.pid}_${Date.now()}`

const postgres: Effect.Effect<void, unknown> = Effect.gen(function*() {
  const sink = yield* Ledger.Sink
  const ledger = yield* PgLedger.PgLedger
  const entry = (id: string, budget: string, nanos: number, model: string): Ledger.Entry =>
    Ledger.Entry.make({
      id,
      budget,
      kind: "commit",
      tokens: 1000,
      nanos,
      tokensOverage: 0,
      nanosOverage: 0,
      estimated: false,
      labels: { model },
      at: Date.UTC(2026, 2, 15)
    })
  const batch = [
    entry("a", "consumer/tenant-a", 2 ** 40, "small"),
    entry("b", "consumer/tenant-a/agent", 3, "large"),
    entry("c", "consumer/tenant-ab", 5, "small")
  ]
  yield* sink.write(batch)
  yield* sink.write(batch) // idempotent by id
  const [march] = yield* ledger.spend({
    budget: "consumer/tenant-a",
    from: Date.UTC(2026, 2, 1),
    to: Date.UTC(2026, 3, 1),
    groupBy: "month"
  })
  yield* checkFields("tenant-a in March", march ?? {}, { group: "2026-03", tokens: 2000, nanos: 2 ** 40 + 3, entries: 2 })
  const perModel = yield* ledger.spend({ budget: "consumer", groupBy: { label: "model" } })
  yield* check("per model", JSON.stringify(perModel.map((row) => [row.group, row.nanos])), JSON.stringify([["large", 3], ["small", 2 ** 40 + 5]]))
  const invalid = yield* ledger.spend({ budget: "consumer//a" }).pipe(
    Effect.as(undefined),
    Effect.catchTag("InvalidUsage", (e) => Effect.succeed(e.field))
  )
  yield* check("PgLedger InvalidUsage.field", invalid, "query.budget")
}).pipe(
  Effect.provide(PgLedger.layer({ table: ledgerTable })),
  Effect.ensuring(
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      yield* sql`DROP TABLE IF EXISTS ${sql(ledgerTable)}, ${sql(`${ledgerTable}_migrations`)}`
    }).pipe(Effect.orDie)
  ),
  Effect.provide(PgClient.layer({ url: Redacted.make(databaseUrl) }))
)

// --- main -----------------------------------------------------------------------

const store = process.argv[2]
if (store !== "memory" && store !== "redis" && store !== "postgres") {
  console.error("usage: node main.js memory|redis|postgres")
  process.exit(2)
}

const exit = await Effect.runPromiseExit(store === "memory" ? memory : store === "redis" ? redis : postgres)
if (Exit.isFailure(exit)) {
  console.error(`consumer (${store}): the program failed:`, exit.cause)
  process.exitCode = 1
} else if (failures.length > 0) {
  console.error(`consumer (${store}): ${failures.length} failed, ${passed} passed`)
  process.exitCode = 1
} else {
  console.log(`consumer (${store}): ${passed} checks passed`)
}
