import { Effect } from "effect"
import type * as Redis from "effect/persistence/Redis"
import type { Entry, EntryKind, Sink } from "../../Ledger.ts"
import { handOver } from "../outbox.ts"
import { reportFailure } from "../report.ts"
import * as Batch from "./batch.ts"
import { deadline } from "./deadline.ts"
import * as HostTime from "../hostTime.ts"
import * as Scripts from "./scripts.ts"

/*
 * The drainer of one tree's ledger outbox, in each process whose store
 * has a sink (the scripts write the outbox, lua/ledger.ts). It reads a
 * batch through the outbox's consumer group, hands it to the sink until
 * the sink takes it, then acknowledges and deletes it in one step. A
 * drainer that dies with a batch leaves it pending; another takes it over
 * once it has been idle a lease, and hands it over again (the
 * sink keeps ids unique, so it counts once). Woken by this process's
 * charges, and every second for those of processes without a sink.
 */

const idleMillis = 1_000
/** A consumer idle this long with nothing pending was a drainer of an ended process. */
const tidyIdleMillis = 3_600_000

const entriesOf = (answer: ReadonlyArray<string>): ReadonlyArray<readonly [string, Entry]> => {
  const entries: Array<readonly [string, Entry]> = []
  for (let at = 1; at + 1 < answer.length; at += 2) {
    const streamId = answer[at]!
    const [kind, base, budget, tokens, nanos, tokensOverage, nanosOverage, estimated, labels, time, windowEnd] = answer[
      at + 1
    ]!.split("\0")
    entries.push([streamId, {
      // Unique to the entry: its stream id in its tree's outbox, after the
      // charge's hold id or idempotency key (for neither, the tree's key
      // and its root's life: lua/charges.ts).
      id: `${base}@${streamId}`,
      budget: budget!,
      kind: kind as typeof EntryKind.Type,
      tokens: Number(tokens),
      nanos: Number(nanos),
      tokensOverage: Number(tokensOverage),
      nanosOverage: Number(nanosOverage),
      estimated: estimated === "1",
      labels: labels === "" ? {} : JSON.parse(labels!),
      at: Number(time),
      windowEndsAt: windowEnd === "" ? undefined : Number(windowEnd)
    }])
  }
  return entries
}

export interface Drainer {
  /** Runs for ever; fork it in the tree's scope. */
  readonly run: Effect.Effect<never>
  /**
   * Deletes from the outbox's group the consumers of ended processes (idle
   * an hour, holding nothing), or, `closing`, this drainer's own if it
   * holds nothing: the group stays as small as the fleet.
   */
  readonly tidy: (closing: boolean) => Effect.Effect<void>
  /** Tells the drainer this process wrote entries. */
  readonly wake: () => void
  /** The outbox's length as last read: at every look for entries, and at every retry of a batch the sink refused. */
  readonly backlog: () => number
}

export const makeDrainer = (
  redis: Redis.Redis["Service"],
  tree: string,
  consumer: string,
  sink: Sink["Service"],
  /** How long a batch taken by a drainer waits before another takes it over. */
  claimIdleMillis: number,
  /** How long one round trip may take (the store's timeout). */
  timeoutMillis: number
): Drainer => {
  const outbox = `${tree}:ledger`
  const bounded = <A>(script: Effect.Effect<A, Redis.RedisError>) =>
    deadline(script, timeoutMillis, Batch.noReply(timeoutMillis))
  let woken = false
  let resume: (() => void) | undefined
  const wake = () => {
    woken = true
    const waiting = resume
    resume = undefined
    waiting?.()
  }
  /** Until this process writes entries, or a second passes. */
  const rest = Effect.callback<void>((done) => {
    if (woken) return done(Effect.void)
    const timer = setTimeout(wake, idleMillis)
    resume = () => done(Effect.void)
    return Effect.sync(() => {
      clearTimeout(timer)
      resume = undefined
    })
  })
  let failing = false
  let backlog = 0
  // Between attempts at a batch the sink refused, the backlog is read again.
  const backoff = (millis: number) =>
    Effect.andThen(
      HostTime.sleep(millis),
      // Only for the gauge: a read that fails leaves the last value.
      bounded(redis.send<number>("XLEN", outbox)).pipe(
        Effect.tap((length) => Effect.sync(() => (backlog = length))),
        Effect.ignore
      )
    )
  const step: Effect.Effect<void> = Effect.suspend(() => {
    woken = false
    return Effect.flatMap(bounded(redis.eval(Scripts.ledgerTake)(outbox, consumer, sink.batchSize, claimIdleMillis)), (answer) => {
      failing = false
      backlog = Number(answer[0])
      const taken = entriesOf(answer)
      if (taken.length === 0) return rest
      return handOver(sink, taken.map(([, entry]) => entry), backoff).pipe(
        Effect.andThen(bounded(redis.eval(Scripts.ledgerDone)(outbox, taken.map(([streamId]) => streamId)))),
        // A full batch: more may wait.
        Effect.andThen(taken.length < sink.batchSize ? rest : Effect.void)
      )
    })
  }).pipe(
    // Redis unreachable: entries stay in the outbox (pending ones are taken
    // again later); logged once an outage.
    Effect.catch((error) => {
      const log = failing ? Effect.void : Effect.logWarning(
        `Ledger outbox of "${tree}" could not be drained: ${error.message}; its entries wait in Redis`
      )
      failing = true
      return Effect.andThen(log, HostTime.sleep(idleMillis))
    })
  )
  const tidy = (closing: boolean) =>
    bounded(redis.eval(Scripts.ledgerTidy)(outbox, consumer, closing ? -1 : tidyIdleMillis)).pipe(
      Effect.asVoid,
      reportFailure(`Ledger outbox of "${tree}": could not delete the consumers of ended drainers; tried again later`)
    )
  return { run: Effect.forever(step), tidy, wake, backlog: () => backlog }
}
