/**
 * Node processes of the multi-process tests: test/support/redisWorker.ts in
 * a process of its own, and a fleet of them racing on one budget.
 */
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import type { Scope } from "effect"
import { spawn } from "node:child_process"
import { type BudgetService, usdToNanos } from "../../src/index.ts"

/**
 * Starts a worker: its process, its first line of output, and `line(n)`,
 * its line `n` (from 0) once printed.
 */
export const worker = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) => {
  // Node itself, with tsx as a loader: a SIGKILL then reaches the process
  // that holds the leases, not a wrapper around it.
  const child = spawn(process.execPath, ["--import", "tsx", "test/support/redisWorker.ts", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, ...env }
  })
  let output = ""
  child.stdout.on("data", (chunk) => (output += chunk))
  const line = (n: number) =>
    new Promise<string>((resolve, reject) => {
      const printed = () => {
        const lines = output.split("\n")
        if (lines.length > n + 1) resolve(lines[n]!)
      }
      printed()
      child.stdout.on("data", printed)
      child.on("exit", (code, signal) => reject(new Error(`worker exited (${signal ?? code}) before printing line ${n}`)))
    })
  const firstLine = line(0)
  // Awaited or not: a worker killed on purpose rejects it.
  firstLine.catch(() => {})
  return { child, firstLine, line }
}

/**
 * 4 worker processes x 250 fibers reserving and committing on `budget` (the
 * budget `shared` under `prefix`, capped at 200,000 tokens and $0.2),
 * sampled throughout: never past a cap, and totals exact to the nano-dollar.
 */
export const fleetOnSharedBudget = (
  budget: BudgetService,
  prefix: string,
  env: Readonly<Record<string, string>> = {}
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function*() {
    const workers = Array.from({ length: 4 }, () => worker(["cycles", prefix, "shared", "250", "20"], env))
    yield* Effect.addFinalizer(() => Effect.sync(() => workers.forEach((w) => w.child.kill("SIGKILL"))))
    let samples = 0
    let running = true
    const results = Promise.all(workers.map((w) => w.firstLine)).finally(() => (running = false))
    while (running) {
      const snap = yield* Effect.orDie(budget.snapshot)
      samples++
      assert.isAtMost(snap.tokensUsed + snap.tokensReserved, 200_000, "tokens past the cap")
      assert.isAtMost(usdToNanos(snap.usdUsed) + usdToNanos(snap.usdReserved), usdToNanos(0.2), "usd past the cap")
      yield* Effect.sleep("5 millis")
    }
    const charged = (yield* Effect.promise(() => results)).map((line) => JSON.parse(line))
    const snap = yield* Effect.orDie(budget.snapshot)
    assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved], [0, 0])
    assert.strictEqual(snap.tokensUsed, charged.reduce((sum, c) => sum + c.tokens, 0))
    assert.strictEqual(usdToNanos(snap.usdUsed), charged.reduce((sum, c) => sum + c.nanos, 0))
    assert.isAbove(charged.reduce((sum, c) => sum + c.refused, 0), 0, "the cap was reached")
    assert.isAbove(samples, 10)
  })
