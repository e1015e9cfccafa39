/**
 * Redis going away and coming back: operations fail with BudgetUnavailable
 * while it is gone, and the books are exact after it returns. The test runs
 * a Redis of its own (on a free port, append-only file in a temporary
 * folder), so it can stop it without disturbing the others.
 */
import { NodeRedis } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Logger, Schedule } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { usdToNanos } from "../src/index.ts"
import { RedisBudget } from "../src/redis.ts"
import { available } from "./support/redis.ts"

/** A port nothing listens on now. */
const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const probe = createServer()
    probe.on("error", reject)
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { readonly port: number }
      probe.close(() => resolve(port))
    })
  })

const dir = mkdtempSync(join(tmpdir(), "budget-redis-"))

/** A redis-server of this test's own; fails at once if it exits before it is ready. */
const startRedis = (port: number): Promise<ChildProcess> =>
  new Promise((resolve, reject) => {
    const server = spawn("redis-server", [
      "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
      "--appendfsync", "always", "--dir", dir
    ], { stdio: ["ignore", "pipe", "inherit"] })
    server.stdout!.on("data", (chunk: Buffer) => {
      if (chunk.toString().includes("Ready to accept connections")) resolve(server)
    })
    server.on("error", reject)
    server.on("exit", (code) => reject(new Error(`redis-server on port ${port} exited (${code}) before it was ready`)))
  })

const stopRedis = (server: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    server.on("exit", () => resolve())
    server.kill("SIGTERM")
  })

describe.runIf(available)("Redis going away", () => {
  it.live("fails with BudgetUnavailable while Redis is gone, and keeps exact books across its return", () => {
    // The driver's warnings while its server is down are this test's to
    // read, not the run's to print.
    const driverWarnings: Array<string> = []
    const logger = Logger.make(({ logLevel, message }) => {
      if (logLevel === "Warn") driverWarnings.push((Array.isArray(message) ? message : [message]).join(" "))
    })
    return Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      let server = yield* Effect.promise(() => startRedis(port))
      yield* Effect.addFinalizer(() => Effect.promise(() => stopRedis(server)))
      const redis = yield* Layer.build(Layer.orDie(NodeRedis.layer({ url: `redis://127.0.0.1:${port}` })))
      const budget = yield* RedisBudget.make({ name: "outage", tokenCap: 1_000_000, usdCap: 100 }, { leaseTtl: "1 second", timeout: "300 millis" }).pipe(Effect.provide(redis))

      // Calls that reserve, then commit until the commit is acknowledged:
      // a commit whose reply was lost is retried, and charges once.
      const charged = { tokens: 0, nanos: 0, unavailable: 0 }
      const call = Effect.scoped(Effect.gen(function*() {
        const hold = yield* budget.reserve({ tokens: 20, usd: 0.002 })
        yield* Effect.sleep("2 millis")
        // Counted in the same uninterruptible stretch as the commit: stopping
        // the load must not charge a commit the count never sees.
        yield* Effect.uninterruptible(hold.commit({ tokens: 15, usd: 0.0015 }).pipe(
          Effect.tapError(() => Effect.sync(() => charged.unavailable++)),
          Effect.retry(Schedule.spaced("50 millis")),
          Effect.map((settlement) => {
            charged.tokens += settlement.tokens
            charged.nanos += usdToNanos(settlement.usd)
          })
        ))
      })).pipe(
        Effect.catchTag("BudgetUnavailable", () => Effect.sync(() => charged.unavailable++)),
        Effect.andThen(Effect.sleep("5 millis"))
      )
      const load = yield* Effect.forkChild(
        Effect.forEach(Array.from({ length: 8 }), () => Effect.forever(call), { concurrency: "unbounded" })
      )
      yield* Effect.sleep("300 millis")
      yield* Effect.promise(() => stopRedis(server))
      const down = yield* Effect.flip(budget.snapshot)
      assert.strictEqual(down._tag, "BudgetUnavailable")
      assert.include(down.message, `Budget "outage" is unavailable`)
      assert.match(down.message, /unavailable: [^.\s]/, "the message names the cause")
      yield* Effect.sleep("500 millis")
      server = yield* Effect.promise(() => startRedis(port))
      yield* Effect.sleep("2500 millis")
      yield* Fiber.interrupt(load)
      // holds whose replies were lost expire with their leases
      yield* Effect.sleep("1200 millis")
      const snap = yield* budget.snapshot
      assert.isAbove(charged.unavailable, 0, "some calls met the outage")
      assert.isAbove(charged.tokens, 0)
      assert.deepStrictEqual([snap.tokensReserved, snap.usdReserved], [0, 0])
      assert.strictEqual(snap.tokensUsed, charged.tokens)
      assert.strictEqual(usdToNanos(snap.usdUsed), charged.nanos)
      assert.isTrue(driverWarnings.some((w) => w.includes("NodeRedis")), "the driver saw the outage")
    }).pipe(Effect.provide(Logger.layer([logger])))
  }, 60_000)
})
