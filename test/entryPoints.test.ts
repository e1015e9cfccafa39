/**
 * The main entry loads no Redis code, no SQL code and no test framework:
 * built as it is published, imported in a process of its own, every module
 * it loads is recorded. The Redis, PostgreSQL and testing entries, imported
 * the same way, do load theirs, so the checks can fail.
 */
import { assert, describe, it } from "@effect/vitest"
import { execFileSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll } from "vitest"

const root = join(import.meta.dirname, "..")
// Inside the repository, so the build resolves `effect` from its node_modules.
const out = mkdtempSync(join(root, "node_modules", ".entry-points-"))

// Records the URL of every module a dynamic import of argv[2] loads.
const recorder = `
import { registerHooks } from "node:module"
const loaded = []
registerHooks({ resolve: (specifier, context, next) => { const r = next(specifier, context); loaded.push(r.url); return r } })
await import(process.argv[2])
console.log(JSON.stringify(loaded))
`

const modulesOf = (entry: string): ReadonlyArray<string> =>
  JSON.parse(
    execFileSync(process.execPath, [join(out, "record.mjs"), join(out, "dist", entry)], { encoding: "utf8" })
  )

// Our Redis store and its Lua, and the drivers. (effect's own
// `persistence/Redis` service module is loaded by effect itself, through
// `RequestResolver`, for every effect program: it is not ours to avoid.)
const redisModule = /\/dist\/(redis|RedisBudget)\.js$|\/internal\/redis\/|\/node_modules\/(redis|@redis|@effect\/platform-node)\//

// Our PostgreSQL ledger, the migrator it runs, and the driver. (effect's
// `sql/SqlClient`, `SqlError` and `Statement` are loaded by effect itself,
// through its persistence modules, for every effect program: not ours to
// avoid.)
const sqlModule = /\/dist\/(sql-pg|PgLedger)\.js$|\/node_modules\/effect\/dist\/sql\/Migrator\.js$|\/node_modules\/@effect\/sql-pg\//

// The conformance suite and what it runs on: optional peers of the testing
// entry only.
const testingModule = /\/dist\/(testing|BudgetStoreContract)\.js$|\/internal\/testing\/|\/node_modules\/(vitest|@vitest|@effect\/vitest|fast-check)\//

beforeAll(() => {
  execFileSync(process.execPath, [
    join(root, "node_modules", "typescript", "bin", "tsc"),
    "-p",
    join(root, "tsconfig.build.json"),
    "--outDir",
    join(out, "dist"),
    "--declaration",
    "false",
    "--declarationMap",
    "false",
    "--sourceMap",
    "false"
  ])
  writeFileSync(join(out, "record.mjs"), recorder)
}, 120_000)

afterAll(() => rmSync(out, { recursive: true, force: true }))

describe("entry points", () => {
  it("effect-token-budget loads no Redis module and no Lua", () => {
    const loaded = modulesOf("index.js")
    assert.isTrue(loaded.some((url) => url.endsWith("/Budget.js")), "the main entry was loaded")
    assert.deepStrictEqual(loaded.filter((url) => redisModule.test(url)), [])
  })

  it("effect-token-budget loads no SQL module: not the ledger, not the migrator, not @effect/sql-pg", () => {
    assert.deepStrictEqual(modulesOf("index.js").filter((url) => sqlModule.test(url)), [])
  })

  it("effect-token-budget/redis loads no SQL module", () => {
    assert.deepStrictEqual(modulesOf("redis.js").filter((url) => sqlModule.test(url)), [])
  })

  it("effect-token-budget/sql-pg loads the PostgreSQL ledger and effect's migrator, and no Redis module", () => {
    const loaded = modulesOf("sql-pg.js")
    assert.isTrue(loaded.some((url) => url.endsWith("/PgLedger.js")))
    assert.isTrue(loaded.some((url) => url.endsWith("/node_modules/effect/dist/sql/Migrator.js")))
    assert.isTrue(loaded.some((url) => url.endsWith("/node_modules/effect/dist/sql/SqlClient.js")))
    assert.deepStrictEqual(loaded.filter((url) => redisModule.test(url)), [])
  })

  it("effect-token-budget/sql-pg loads no driver: @effect/sql-pg is the user's to provide", () => {
    // It runs on effect's `SqlClient`; `PgClient.layer` is one that provides it.
    assert.deepStrictEqual(modulesOf("sql-pg.js").filter((url) => /\/node_modules\/@effect\/sql-pg\//.test(url)), [])
  })

  it("effect-token-budget loads no vitest and no fast-check", () => {
    assert.deepStrictEqual(modulesOf("index.js").filter((url) => testingModule.test(url)), [])
  })

  it("effect-token-budget/redis loads the Redis store", () => {
    const loaded = modulesOf("redis.js")
    assert.isTrue(loaded.some((url) => url.includes("/internal/redis/scripts")))
    assert.isTrue(loaded.some((url) => url.endsWith("/RedisBudget.js")))
  })

  it("effect-token-budget/redis loads node-redis only when a NodeRedisCluster layer is built", () => {
    // `redis` is an optional peer: a user on another driver need not install it.
    const loaded = modulesOf("redis.js")
    assert.isTrue(loaded.some((url) => url.endsWith("/NodeRedisCluster.js")))
    assert.deepStrictEqual(loaded.filter((url) => /\/node_modules\/(redis|@redis)\//.test(url)), [])
  })

  it("effect-token-budget/testing loads the suite, @effect/vitest and fast-check", () => {
    const loaded = modulesOf("testing.js")
    assert.isTrue(loaded.some((url) => url.includes("/internal/testing/contract")))
    assert.isTrue(loaded.some((url) => url.includes("/node_modules/@effect/vitest/")))
    assert.isTrue(loaded.some((url) => url.includes("/node_modules/fast-check/")))
  })
})
