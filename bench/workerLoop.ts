/**
 * The loop of a bench's worker process (bench/fleetWorker.ts,
 * bench/ledgerWorker.ts): prints `ready`; then, for each line
 * `<operation> <millis>` on stdin, keeps `inFlight` of that operation going
 * for `millis` and prints, as one JSON line, how many finished (less those
 * a worker counted as refused with `refused`), how many were refused, and
 * in how long. It ends when stdin closes, so a worker never outlives the
 * bench.
 */
import { Effect } from "effect"
import { createInterface } from "node:readline"

/** Runs the worker counted as refused in the current run. */
export const refused = { count: 0 }

/** Finished runs of `op`, `inFlight` at a time, until `millis` have passed. */
const runFor = (op: Effect.Effect<unknown, unknown>, inFlight: number, millis: number) =>
  Effect.suspend(() => {
    const start = performance.now()
    let ops = 0
    refused.count = 0
    const loop = Effect.whileLoop({
      while: () => performance.now() - start < millis,
      body: () => op,
      step: () => void ops++
    })
    return Effect.forEach(Array.from({ length: inFlight }), () => loop, { concurrency: "unbounded", discard: true }).pipe(
      Effect.map(() => ({ ops: ops - refused.count, refused: refused.count, millis: performance.now() - start }))
    )
  })

export const serve = (
  operations: Readonly<Record<string, Effect.Effect<unknown, unknown>>>,
  inFlight: number
): Effect.Effect<void> =>
  Effect.gen(function*() {
    const commands = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
    console.log("ready")
    while (true) {
      const command = yield* Effect.promise(() => commands.next())
      if (command.done === true) return
      const [operation, millis] = command.value.split(" ")
      const op = operations[operation!]
      if (op === undefined) return yield* Effect.die(new Error(`unknown operation: ${command.value}`))
      console.log(JSON.stringify(yield* Effect.orDie(runFor(op, inFlight, Number(millis)))))
    }
  })

/** Runs a worker's program to its end: exit 0, or 1 with its error. */
export const runWorker = (program: Effect.Effect<void, unknown>): void => {
  Effect.runPromise(program).then(
    () => process.exit(0),
    (error) => {
      console.error(error)
      process.exit(1)
    }
  )
}
