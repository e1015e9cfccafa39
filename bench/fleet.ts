/**
 * A fleet on one Redis budget: 4 Node processes (bench/fleetWorker.ts), each
 * keeping 64 operations in flight, started together by one line on their
 * stdin; total operations per second across the 4 for `record`, and total
 * cycles per second for scoped `reserve` + `commit`. Beside them,
 * `redis-benchmark -c 64` sends the raw one-line script from a C client:
 * what the same Redis serves when the client costs nothing. Rounds
 * interleave the three after one untimed round, and each ratio (ours / raw,
 * in operations per second: higher is better) is the median of the
 * per-round ratios. About 30 seconds; printed below the table. Runs alone
 * with `npx tsx bench/fleet.ts`.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import type { Duration } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { createInterface } from "node:readline"
import { fileURLToPath, pathToFileURL } from "node:url"
import { median } from "./harness.ts"
import { connect, prefix, raw, url } from "./redis.ts"
import { evalsha, requestsPerSecond } from "./redisBenchmark.ts"

const processes = 4
const inFlight = 64
/** How long each timed run of an operation lasts, in every process at once. */
const millis = 1_000
const warmup = 1
const rounds = 5
/** About a second of the raw script at -c 64 on a 2-core machine. */
const raw64 = { clients: inFlight, requests: 100_000 }

const started = "60 seconds"
const stuckAfter = "30 seconds"
const workerPath = fileURLToPath(new URL("./fleetWorker.ts", import.meta.url))

export interface Worker {
  readonly child: ChildProcess
  /** The next line the worker prints. */
  readonly line: Effect.Effect<string, Error>
}

/** A worker process running `path` with `args`, killed (and waited for) when the scope closes, whatever ended it. */
export const spawnWorker = (path: string, args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync((): Worker => {
      // Node itself, with tsx as a loader, as test/redisProcesses.test.ts does:
      // a kill reaches the process that runs the budget, not a wrapper.
      const child = spawn(process.execPath, ["--import", "tsx", path, ...args], {
        stdio: ["pipe", "pipe", "inherit"]
      })
      const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
      const line = Effect.flatMap(
        Effect.tryPromise({ try: () => lines.next(), catch: (cause) => new Error("reading a worker", { cause }) }),
        (next) =>
          next.done === true
            ? Effect.fail(new Error(`a worker exited (${child.exitCode ?? child.signalCode ?? "closed its output"})`))
            : Effect.succeed(next.value as string)
      )
      return { child, line }
    }),
    ({ child }) =>
      Effect.callback<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill("SIGKILL")
      })
  )

const worker = spawnWorker(workerPath, [url, prefix, "fleet", String(inFlight)])

/** One line from every worker, or a failure that names the wait. */
export const answers = (workers: ReadonlyArray<Worker>, within: Duration.Input, waitingFor: string) =>
  Effect.forEach(workers, (w) => w.line, { concurrency: "unbounded" }).pipe(
    Effect.timeoutOrElse({
      duration: within,
      orElse: () => Effect.fail(new Error(`no answer from the workers within ${within}, waiting for ${waitingFor}`))
    })
  )

/** Total operations per second of `operation` across the workers, all started by the same write. */
const fleetRate = (workers: ReadonlyArray<Worker>, operation: "record" | "cycle") =>
  Effect.gen(function*() {
    for (const w of workers) w.child.stdin!.write(`${operation} ${millis}\n`)
    const runs = (yield* answers(workers, stuckAfter, operation)).map((line) =>
      JSON.parse(line) as { readonly ops: number; readonly millis: number }
    )
    return runs.reduce((sum, run) => sum + run.ops, 0) / Math.max(...runs.map((run) => run.millis)) * 1_000
  })

/** Operations per second in one round. */
interface Sample {
  readonly record: number
  readonly cycle: number
  readonly raw: number
}

const perSecond = (rate: number) => `${Math.round(rate).toLocaleString("en-US").padStart(9)}/s`

export const fleetReport: Effect.Effect<string> = Effect.scoped(Effect.gen(function*() {
  const title = `A fleet: ${processes} processes x ${inFlight} in flight on one Redis budget`
  // First in the scope, so last out: this run's keys go after the workers.
  const redis = yield* connect
  if (typeof redis === "string") return `${title}: not measured: ${redis}`
  const rawArgs = yield* evalsha(redis, raw, `${prefix}{fleet-raw}`)
  const workers = yield* Effect.forEach(Array.from({ length: processes }), () => worker)
  yield* answers(workers, started, "them to start")
  const samples: Array<Sample> = []
  // Where redis-benchmark cannot run, why; our rows are measured still.
  let rawMissing: string | undefined
  for (let round = 0; round < warmup + rounds; round++) {
    const record = yield* fleetRate(workers, "record")
    const cycle = yield* fleetRate(workers, "cycle")
    let rawRate = Number.NaN
    if (rawMissing === undefined) {
      const result = yield* Effect.result(requestsPerSecond(rawArgs, raw64))
      if (result._tag === "Success") rawRate = result.success
      else rawMissing = result.failure
    }
    if (round >= warmup) samples.push({ record, cycle, raw: rawRate })
  }
  const of = (pick: (sample: Sample) => number) => median(samples.map(pick))
  const row = (name: string, figures: string) => `  ${name.padEnd(36)} ${figures}`
  const ours = (name: string, pick: (sample: Sample) => number) =>
    row(name, perSecond(of(pick)) + (rawMissing === undefined ? `  ${of((s) => pick(s) / s.raw).toFixed(2)}x the raw script` : ""))
  return [
    `${title}, total operations per second (median of ${rounds} rounds of ${millis} ms; ratio ours / raw, higher is better):`,
    ours("record", (s) => s.record),
    ours("scoped reserve + commit (cycles)", (s) => s.cycle),
    row(`raw EVALSHA, redis-benchmark -c ${inFlight}`, rawMissing ?? perSecond(of((s) => s.raw)))
  ].join("\n")
}).pipe(Effect.catch((error) => Effect.succeed(`A fleet: not measured: ${error.message}`))))

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  // Ctrl-C interrupts the report, so the workers are killed and the keys deleted.
  NodeRuntime.runMain(Effect.flatMap(fleetReport, Console.log))
}
