import { Effect } from "effect"
import type * as Redis from "effect/persistence/Redis"
import type { Entry, EntryKind, Sink } from "../../Ledger.ts"
import { handOver, reportBacklog } from "../outbox.ts"
import * as HostTime from "./hostTime.ts"
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
/** Values an entry has in the outbox, after its stream id. */
const valuesPerEntry = 11

const entriesOf = (tree: string, answer: ReadonlyArray<string>): ReadonlyArray<readonly [string, Entry]> => {
  const entries: Array<readonly [string, Entry]> = []
  for (let at = 1; at + valuesPerEntry < answer.length + 1; at += valuesPerEntry + 1) {
    const streamId = answer[at]!
    const [kind, base, budget, tokens, nanos, tokensOverage, nanosOverage, estimated, labels, time, windowEnd] = answer
      .slice(at + 1, at + 1 + valuesPerEntry)
    entries.push([streamId, {
      // Unique to the entry: its stream id in its tree's outbox, after the
      // charge's hold id or idempotency key (the tree's key for neither).
      id: `${base === "" ? tree : base}@${streamId}`,
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
  /** Tells the drainer this process wrote entries. */
  readonly wake: () => void
}

export const makeDrainer = (
  redis: Redis.Redis["Service"],
  tree: string,
  consumer: string,
  sink: Sink["Service"],
  /** How long a batch taken by a drainer waits before another takes it over. */
  claimIdleMillis: number
): Drainer => {
  const outbox = `${tree}:ledger`
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
  const step: Effect.Effect<void> = Effect.suspend(() => {
    woken = false
    return Effect.flatMap(redis.eval(Scripts.ledgerTake)(outbox, consumer, sink.batchSize, claimIdleMillis), (answer) => {
      failing = false
      const taken = entriesOf(tree, answer)
      const backlog = reportBacklog(Number(answer[0]))
      if (taken.length === 0) return Effect.andThen(backlog, rest)
      return handOver(sink, taken.map(([, entry]) => entry), HostTime.sleep).pipe(
        Effect.andThen(redis.eval(Scripts.ledgerDone)(outbox, taken.map(([streamId]) => streamId))),
        Effect.andThen(backlog),
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
  return { run: Effect.forever(step), wake }
}
