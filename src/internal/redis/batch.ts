import { Cause, Effect, Exit } from "effect"
import type { Fiber } from "effect"
import * as Redis from "effect/persistence/Redis"
import { awaitWithin } from "./deadline.ts"
import { isReply, type Outage } from "./outage.ts"
import * as Scripts from "./scripts.ts"
import type { ChargeResult, Kept, SettlementResult } from "./scripts.ts"

/*
 * The hot operations of a budget tree (record, reserve, commit, release) go
 * to Redis in batches, as one `batch` script that runs them in order, each
 * as if alone. An operation sent while none is on its way goes at once, by
 * itself. One sent while others are on their way waits for the end of the
 * current task, with every other sent meanwhile (the replies of one read
 * from the socket resume many fibers in one task). So an operation is one
 * round trip either way, one alone pays nothing for batching, and 64 in
 * flight cost Redis a few script calls, not 64.
 *
 * The host's microtask queue and timer, not the fiber scheduler or `Clock`:
 * a batch leaves as soon as the task that filled it ends, and a deadline on
 * the network holds even where a `TestClock` stops time.
 */

/** The keys of a budget's chain, from the budget up to the root; shared by its operations. */
type Chain = ReadonlyArray<string>

/**
 * `id` of a record is its idempotency key, if it has one; a reserve
 * `once` for its `id` gets the hold already under it (scripts.ts).
 * `labels` are a charge's, as JSON text ("" for none), for the ledger.
 */
export type Operation =
  | {
    readonly _tag: "Record"
    readonly chain: Chain
    readonly tokens: number
    readonly nanos: number
    readonly labels?: string | undefined
    readonly id?: string | undefined
  }
  | {
    readonly _tag: "Reserve"
    readonly chain: Chain
    readonly id: string
    readonly tokens: number
    readonly nanos: number
    readonly labels?: string | undefined
    readonly once?: boolean | undefined
  }
  | {
    readonly _tag: "Commit"
    readonly chain: Chain
    readonly id: string
    readonly tokens: number
    readonly nanos: number
    readonly estimated: boolean
    readonly labels?: string | undefined
  }
  | { readonly _tag: "Release"; readonly chain: Chain; readonly id: string }

/** What the script answers an operation. */
export type Result<O extends Operation> = O extends { readonly _tag: "Commit" | "Release" } ? SettlementResult
  : O extends { readonly _tag: "Reserve" } ? ChargeResult | Kept
  : ChargeResult

export interface BatchOptions {
  readonly tree: string
  readonly leaseMillis: number
  /** How long a settlement is kept for a retried commit to find. */
  readonly keepMillis: number
  /** How long an idempotency key is kept. */
  readonly idKeepMillis: number
  readonly timeoutMillis: number
}

/** Sends operations of one tree, in batches. */
export interface Batcher {
  /**
   * One operation, in this task's batch. A batch that fails, or has no
   * reply within the timeout, fails each of its operations alike, with
   * `fail` of the `RedisError`; but one that may have run and is safe to
   * run again (`retryOf`) is sent again while its timeout lasts.
   */
  readonly run: <O extends Operation, E>(
    operation: O,
    fail: (error: Redis.RedisError) => E
  ) => Effect.Effect<Result<O>, E>
}

interface Entry {
  operation: Operation
  readonly fail: (error: Redis.RedisError) => unknown
  /**
   * When its timeout ends (host time, ms): it fails then, answered or not.
   * Set when it is first sent (0 until then): one clock read a batch.
   */
  deadline: number
  /** Until it is answered, or leaves unanswered (interrupted). */
  resume: ((effect: Effect.Effect<unknown, unknown>) => void) | undefined
}

/**
 * How to send again an operation whose batch failed without a reply, so
 * that it takes effect once whether or not the first ran: a settlement
 * (its hold keeps the first), a reserve once for its hold id, a record
 * with an idempotency key. A record without one cannot be: undefined.
 */
const retryOf = (operation: Operation): Operation | undefined => {
  switch (operation._tag) {
    case "Record":
      return operation.id === undefined ? undefined : operation
    case "Reserve":
      return operation.once ? operation : { ...operation, once: true }
    default:
      return operation
  }
}

/** A batch that failed is sent again after this long, if its operations' timeouts allow. */
const retryMillis = 25

/**
 * Whether a batch that failed may have run: Redis did not answer (an error
 * it answered ran nothing), and the client did not refuse to send it.
 */
const mayHaveRun = (error: unknown): boolean => {
  const cause = error instanceof Redis.RedisError ? error.cause : error
  return !isReply(cause) && !(cause instanceof Error && /client is (offline|closed)/.test(cause.message))
}

/** Why a round trip failed that had no reply within `millis`. */
export const noReply = (millis: number) => () =>
  new Redis.RedisError({ cause: new Error(`no reply within ${millis} ms`) })

const ok: ChargeResult = ["ok"]

/** An operation's answer, from the words the script answers it with. */
const resultOf = <O extends Operation>(reply: string): Result<O> =>
  (reply === "ok" ? ok : reply.split(" ")) as Result<O>

/**
 * A script runs alone in Redis, so a batch is bounded: 256 operations take
 * a few hundred microseconds, no longer than other clients can wait.
 */
const maxBatch = 256

/** The `batch` script's KEYS and ARGV for `operations`, in order (see scripts.ts). */
export const batchArguments = (
  options: Pick<BatchOptions, "tree" | "leaseMillis" | "keepMillis" | "idKeepMillis">,
  operations: ReadonlyArray<Operation>
): [keys: ReadonlyArray<string>, args: Array<string | number>] => {
  const args: Array<string | number> = [options.tree, options.leaseMillis, options.keepMillis, options.idKeepMillis, 0]
  // Chains are shared by the operations of one budget: each is written
  // once, before the operations. The root, last of every chain, is left
  // out: it is the last key.
  const chains = new Map<Chain, number>()
  const places = new Map<string, number>()
  const keys: Array<string> = []
  for (const { chain } of operations) {
    if (chains.has(chain)) continue
    chains.set(chain, chains.size + 1)
    args.push(chain.length)
    for (let i = 0; i < chain.length - 1; i++) {
      let place = places.get(chain[i]!)
      if (place === undefined) {
        place = keys.push(chain[i]!)
        places.set(chain[i]!, place)
      }
      args.push(place)
    }
  }
  args[4] = chains.size
  for (const op of operations) pushOperation(args, op, chains.get(op.chain)!)
  const root = operations[0]!.chain
  keys.push(root[root.length - 1]!)
  return [keys, args]
}

/** An operation's words, on the chain written `chain`-th. */
const pushOperation = (args: Array<string | number>, op: Operation, chain: number): void => {
  switch (op._tag) {
    case "Record":
      if (op.id === undefined) args.push("r", chain, op.tokens, op.nanos, op.labels ?? "")
      else args.push("R", chain, op.tokens, op.nanos, op.labels ?? "", op.id)
      break
    case "Reserve":
      args.push(op.once ? "H" : "h", chain, op.tokens, op.nanos, op.labels ?? "", op.id)
      break
    case "Commit":
      args.push("c", chain, op.id, op.tokens, op.nanos, op.estimated ? 1 : 0, op.labels ?? "")
      break
    case "Release":
      args.push("x", chain, op.id)
  }
}

/** Forks a fiber that the caller's scope interrupts when it closes. */
export type Fork = <A, E>(effect: Effect.Effect<A, E>) => Fiber.Fiber<A, E>

export const makeBatcher = (
  redis: Redis.Redis["Service"],
  options: BatchOptions,
  fork: Fork,
  outage: Outage
): Batcher => {
  let pending: Array<Entry> = []
  /** Batches sent and not yet answered. */
  let inFlight = 0
  const late = noReply(options.timeoutMillis)

  /**
   * One script call for `batch`, in a fiber of its own: its callers wait on
   * their entries, not on it, so one that leaves does not stop the others.
   * Bounded by one host timer (`awaitWithin`), not a `deadline` fiber:
   * cheap enough for an operation that goes alone.
   */
  const send = (batch: ReadonlyArray<Entry>) => {
    const now = Date.now()
    const entries: Array<Entry> = []
    let deadline = Infinity
    for (const entry of batch) {
      // Interrupted before they left: never sent.
      if (entry.resume === undefined) continue
      if (entry.deadline === 0) entry.deadline = now + options.timeoutMillis
      deadline = Math.min(deadline, entry.deadline)
      entries.push(entry)
    }
    if (entries.length === 0) return
    inFlight++
    const fiber = fork(redis.eval(Scripts.batch)(...batchArguments(options, entries.map((entry) => entry.operation))))
    awaitWithin(fiber, Math.max(1, deadline - now), late, (exit) => {
      // Counted out first: a fiber this resumes may send again at once.
      inFlight--
      const said = outage.seen(exit)
      if (said !== undefined) fork(said)
      const cause = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
      const again: Array<Entry> = []
      for (let i = 0; i < entries.length; i++) {
        const entry = entries[i]!
        const resume = entry.resume
        if (resume === undefined) continue
        if (Exit.isFailure(exit) && retry(entry, cause)) {
          again.push(entry)
          continue
        }
        entry.resume = undefined
        resume(Exit.isSuccess(exit) ? Exit.succeed(resultOf(exit.value[i]!)) : Exit.mapError(exit, entry.fail))
      }
      if (again.length > 0) setTimeout(() => send(again), retryMillis)
    })
  }

  /**
   * Whether a failed entry goes again: if its batch may have run with the
   * reply lost (a dropped connection: not an error Redis answered, nor a
   * client that is offline and sent nothing), if it safely can, and if its
   * timeout lasts past the next try.
   */
  const retry = (entry: Entry, cause: unknown): boolean => {
    if (!mayHaveRun(cause) || entry.deadline - Date.now() <= retryMillis * 2) return false
    const operation = retryOf(entry.operation)
    if (operation === undefined) return false
    entry.operation = operation
    return true
  }

  const flush = () => {
    const entries = pending
    pending = []
    if (entries.length <= maxBatch) return send(entries)
    for (let i = 0; i < entries.length; i += maxBatch) send(entries.slice(i, i + maxBatch))
  }

  return {
    run: <O extends Operation, E>(operation: O, fail: (error: Redis.RedisError) => E) =>
      Effect.callback<Result<O>, E>((resume) => {
        const entry: Entry = { operation, fail, deadline: 0, resume: resume as Entry["resume"] }
        // Alone: at once. Else with every other sent before this task ends.
        if (inFlight === 0 && pending.length === 0) send([entry])
        else if (pending.push(entry) === 1) queueMicrotask(flush)
        // Leaving unanswered: dropped if not sent yet; a reply that comes is ignored.
        return Effect.sync(() => {
          entry.resume = undefined
        })
      })
  }
}
