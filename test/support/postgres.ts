/**
 * The PostgreSQL the tests run against: 127.0.0.1:5432, user postgres,
 * database test (trust auth), shared with others. In CI a missing server
 * fails the run; elsewhere the PostgreSQL tests are skipped, with a notice.
 * Every table the tests make is named `ledger_test_<pid>_<n>` (its
 * migrations table `..._migrations`), and each test file drops its
 * process's tables, and only those, when it ends.
 */
import { PgClient } from "@effect/sql-pg"
import { afterAll } from "@effect/vitest"
import { Clock, Effect, Layer } from "effect"
import type { SqlClient } from "effect/sql/SqlClient"
import type { SqlError } from "effect/sql/SqlError"
import { connect, createServer, type Server, type Socket } from "node:net"

export const host = "127.0.0.1"
export const port = 5432

const config = { host, port, username: "postgres", database: "test", connectTimeout: "2 seconds" } as const

// The pool keeps its idle timers with `Clock`: built with the host's, so a
// test's `TestClock` does not hold them.
const hostClock = Layer.succeed(Clock.Clock, Clock.Clock.defaultValue())

/** A client of the shared server; `options` add to (or replace) its settings. */
export const PgLive = (
  options: Partial<PgClient.PgPoolConfig> = {}
): Layer.Layer<PgClient.PgClient | SqlClient, SqlError> =>
  PgClient.layer({ ...config, ...options }).pipe(Layer.provide(hostClock))

const answers = (): Promise<boolean> =>
  Effect.runPromise(
    Effect.gen(function*() {
      const sql = yield* PgClient.PgClient
      yield* sql`SELECT 1`
      return true
    }).pipe(
      Effect.provide(PgLive({ maxConnections: 1 })),
      Effect.timeout("5 seconds"),
      Effect.orElseSucceed(() => false)
    )
  )

export const available = await answers()

if (!available) {
  if (process.env["CI"]) throw new Error(`PostgreSQL does not answer at ${host}:${port}: the PostgreSQL tests cannot run`)
  console.warn(`\n  PostgreSQL does not answer at ${host}:${port}: skipping the PostgreSQL tests (start one to run them)\n`)
}

const processTables = `ledger_test_${process.pid}_`

let unique = 0

/** A table name no other test, file or process uses: `ledger_test_<pid>_<n>`. */
export const testTable = (): string => `${processTables}${unique++}`

// Only this process's tables: `_` is a LIKE wildcard, hence the escapes.
if (available) {
  afterAll(() =>
    Effect.runPromise(
      Effect.gen(function*() {
        const sql = yield* PgClient.PgClient
        const tables = yield* sql<{ readonly name: string }>`SELECT schemaname || '.' || tablename AS name
FROM pg_tables WHERE tablename LIKE ${`${processTables.replaceAll("_", "\\_")}%`}`
        for (const { name } of tables) yield* sql`DROP TABLE IF EXISTS ${sql(name)}`
      }).pipe(Effect.provide(PgLive({ maxConnections: 1 })))
    )
  )
}

/**
 * A TCP proxy of the test's own between a client and the shared server:
 * it can cut every connection and refuse new ones (`cut`), swallow the
 * server's replies while still forwarding what the client sends
 * (`swallowReplies`), and take connections again (`restore`). The shared
 * server itself is never touched. It closes with the scope.
 */
export interface Proxy {
  readonly port: number
  readonly cut: Effect.Effect<void>
  readonly swallowReplies: Effect.Effect<void>
  readonly restore: Effect.Effect<void>
}

const listen = (server: Server, at: number): Promise<number> =>
  new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen(at, host, () => {
      server.off("error", reject)
      resolve((server.address() as { readonly port: number }).port)
    })
  })

export const makeProxy = Effect.acquireRelease(
  Effect.promise(async () => {
    const sockets = new Set<Socket>()
    let swallowing = false
    const track = (socket: Socket) => {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
      socket.on("error", () => socket.destroy())
    }
    const server = createServer((client) => {
      const upstream = connect(port, host)
      track(client)
      track(upstream)
      client.on("data", (chunk) => upstream.write(chunk))
      upstream.on("data", (chunk) => {
        if (!swallowing) client.write(chunk)
      })
      client.on("close", () => upstream.destroy())
      upstream.on("close", () => client.destroy())
    })
    const proxyPort = await listen(server, 0)
    let listening = true
    const proxy: Proxy = {
      port: proxyPort,
      cut: Effect.promise(() =>
        new Promise<void>((resolve) => {
          swallowing = false
          for (const socket of sockets) socket.destroy()
          if (!listening) return resolve()
          listening = false
          // Closed, so a new connection is refused, not left waiting.
          server.close(() => resolve())
        })
      ),
      swallowReplies: Effect.sync(() => {
        swallowing = true
      }),
      restore: Effect.promise(async () => {
        swallowing = false
        if (!listening) {
          await listen(server, proxyPort)
          listening = true
        }
      })
    }
    return { proxy, server, sockets }
  }),
  ({ server, sockets }) =>
    Effect.promise(() =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        if (server.listening) server.close(() => resolve())
        else resolve()
      })
    )
).pipe(Effect.map(({ proxy }) => proxy))
