/**
 * A redis-server of a test's own, on a free port with a folder of its own:
 * for tests that kill, pause, flush or restart Redis, which must never do
 * so to the shared one. It stops when the test's scope closes; only the
 * process it started is ever signalled.
 */
import { Effect } from "effect"
import type { Scope } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"

export interface OwnRedis {
  readonly port: number
  readonly url: string
  /** The running server's process id. */
  readonly pid: () => number
  /** Killed with SIGKILL: no shutdown, nothing saved but what the append-only file already has. */
  readonly kill: Effect.Effect<void>
  /** Started again on the same port and folder (reading its append-only file, if it keeps one). */
  readonly restart: Effect.Effect<void>
}

export interface OwnRedisOptions {
  /** Keep an append-only file, fsynced at every write: state that survives a SIGKILL. */
  readonly appendOnly?: boolean
}

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

/** Starts redis-server; fails at once if it exits before it is ready. */
const start = (port: number, dir: string, options: OwnRedisOptions): Promise<ChildProcess> =>
  new Promise((resolve, reject) => {
    const server = spawn("redis-server", [
      "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--dir", dir,
      "--appendonly", options.appendOnly ? "yes" : "no", "--appendfsync", "always"
    ], { stdio: ["ignore", "pipe", "inherit"] })
    let output = ""
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      if (output.includes("Ready to accept connections")) {
        server.stdout!.off("data", onData)
        server.stdout!.resume()
        resolve(server)
      }
    }
    server.stdout!.on("data", onData)
    server.on("error", reject)
    server.on("exit", (code) => reject(new Error(`redis-server on port ${port} exited (${code}) before it was ready`)))
  })

const signal = (server: ChildProcess, name: NodeJS.Signals): Promise<void> =>
  new Promise((resolve) => {
    if (server.exitCode !== null || server.signalCode !== null) return resolve()
    server.on("exit", () => resolve())
    server.kill(name)
  })

/** A redis-server of the caller's own, stopped when the scope closes. */
export const ownRedis = (options: OwnRedisOptions = {}): Effect.Effect<OwnRedis, never, Scope.Scope> =>
  Effect.gen(function*() {
    const port = yield* Effect.promise(freePort)
    const dir = mkdtempSync(join(tmpdir(), "budget-redis-"))
    let server = yield* Effect.promise(() => start(port, dir, options))
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => signal(server, "SIGKILL")).pipe(
        Effect.andThen(Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      )
    )
    return {
      port,
      url: `redis://127.0.0.1:${port}`,
      pid: () => server.pid!,
      kill: Effect.promise(() => signal(server, "SIGKILL")),
      restart: Effect.promise(async () => {
        await signal(server, "SIGKILL")
        server = await start(port, dir, options)
      })
    }
  })
