import { Effect, Metric } from "effect"
import type { Context } from "effect"
import { type Entry, LedgerUnavailable, type Sink } from "../Ledger.ts"
import * as HostTime from "./hostTime.ts"

/*
 * A store's ledger outbox in memory: each entry is pushed in the same
 * synchronous step as its charge, and one fiber hands the oldest to the
 * sink, a batch at a time, removing a batch only once the sink took it. A
 * batch the sink refused is handed over again after a backoff; the sink
 * keeps ids unique, so a batch written twice (a reply lost) counts once.
 */

const noop = () => {}

/**
 * Registers the gauge `budget_ledger_backlog` of an outbox (attributes say
 * which) in the `MetricRegistry` of `context`, read from `backlog` when
 * exported; returns how to remove it.
 */
export const registerBacklog = (
  context: Context.Context<never>,
  attributes: Record<string, string>,
  backlog: () => number
): () => void =>
  Metric.registerUnsafe(
    Metric.gauge("budget_ledger_backlog", {
      description: "Ledger entries charged but not yet taken by the sink",
      attributes
    }),
    context,
    { get: () => ({ value: backlog() }), update: noop, modify: noop }
  ).remove

/** How long a store's close waits for the sink to take a batch, and in how many attempts. */
const closeMillis = 5_000
const closeAttempts = 4

/** Backoff between attempts at a batch the sink refused: 100 ms, doubling, at most 10 s. */
const backoffMillis = (attempt: number): number => Math.min(10_000, 100 * 2 ** Math.min(attempt, 7))

/**
 * Hands `batch` to the sink until it takes it, waiting with `sleep` (the
 * store's clock) between attempts; an outage is logged once as it starts,
 * and once as it ends.
 */
export const handOver = (
  sink: Sink["Service"],
  batch: ReadonlyArray<Entry>,
  sleep: (millis: number) => Effect.Effect<void>
): Effect.Effect<void> =>
  Effect.suspend(() => {
    let failures = 0
    // `write` called for each attempt: a sink may decide when it is called.
    const attempt: Effect.Effect<void> = Effect.catch(Effect.suspend(() => sink.write(batch)), (error) => {
      failures++
      const log = failures === 1 ? Effect.logWarning(`${error.message} (${batch.length} entries in this batch)`) : Effect.void
      return Effect.andThen(log, Effect.andThen(sleep(backoffMillis(failures - 1)), attempt))
    })
    return Effect.andThen(attempt, () =>
      failures > 0
        ? Effect.logInfo(`Ledger sink "${sink.name}" takes entries again, after ${failures} refused attempts`)
        : Effect.void)
  })

export class Outbox {
  private entries: Array<Entry> = []
  /** Entries before it were taken by the sink. */
  private head = 0
  private wakeUp: (() => void) | undefined = undefined
  /** Ids of entries with no idempotency key: unique across processes and restarts, as a sink keeps them. */
  private readonly prefix = globalThis.crypto.randomUUID()
  private sequence = 0

  constructor(readonly sink: Sink["Service"]) {}

  nextId(): string {
    return `${this.prefix}.${this.sequence++}`
  }

  get backlog(): number {
    return this.entries.length - this.head
  }

  /** At its bound: new charges are refused (commits are still pushed). */
  get full(): boolean {
    return this.backlog >= this.sink.maxBacklog
  }

  push(entry: Entry): void {
    this.entries.push(entry)
    const wakeUp = this.wakeUp
    if (wakeUp !== undefined) {
      this.wakeUp = undefined
      wakeUp()
    }
  }

  private get batch(): ReadonlyArray<Entry> {
    return this.entries.slice(this.head, this.head + this.sink.batchSize)
  }

  private taken(count: number): void {
    this.head += count
    // Compacted once the taken part is most of the array.
    if (this.head >= 1_024 && this.head * 2 >= this.entries.length) {
      this.entries = this.entries.slice(this.head)
      this.head = 0
    }
  }

  /** Fails after `closeMillis` of the host's time. */
  private get noAnswer(): Effect.Effect<never, LedgerUnavailable> {
    return Effect.andThen(
      HostTime.sleep(closeMillis),
      Effect.fail(new LedgerUnavailable({ sink: this.sink.name, cause: new Error(`no answer within ${closeMillis} ms`) }))
    )
  }

  /**
   * `batch` handed over at a close: a few attempts (a pool may hand the
   * first a connection opened before an outage ended), within `closeMillis`.
   */
  private lastWrite(batch: ReadonlyArray<Entry>): Effect.Effect<void, LedgerUnavailable> {
    const attempt = (n: number): Effect.Effect<void, LedgerUnavailable> =>
      Effect.catch(Effect.suspend(() => this.sink.write(batch)), (error) =>
        n >= closeAttempts - 1 ? Effect.fail(error) : Effect.andThen(HostTime.sleep(100 * 2 ** n), attempt(n + 1)))
    return Effect.raceFirst(attempt(0), this.noAnswer)
  }

  private readonly nonEmpty: Effect.Effect<void> = Effect.callback<void>((resume) => {
    if (this.backlog > 0) return resume(Effect.void)
    this.wakeUp = () => resume(Effect.void)
    return Effect.sync(() => {
      this.wakeUp = undefined
    })
  })

  /**
   * Hands the backlog to the sink for ever, a batch at a time. Woken by a
   * charge's push, which resumes it inline, it first yields: the charge's
   * step does not run a hand-over, and the drain takes, in its next turn,
   * every entry pushed meanwhile. Then it hands over batches until the
   * outbox is empty, with no yield between them: a fiber charging back to
   * back pushes about a thousand entries between two of its yields, and a
   * drain that took one batch a turn would fall behind it until the bound
   * refused charges (it still yields as every fiber does, after its share
   * of operations).
   */
  readonly drain: Effect.Effect<never> = Effect.suspend(() => {
    const next = Effect.suspend(() => {
      const batch = this.batch
      return Effect.map(handOver(this.sink, batch, Effect.sleep), () => this.taken(batch.length))
    })
    const all = Effect.whileLoop({ while: () => this.backlog > 0, body: () => next, step: () => {} })
    return Effect.forever(Effect.andThen(this.nonEmpty, Effect.andThen(Effect.yieldNow, all)), { disableYield: true })
  })

  /**
   * At the store's close: what is left, handed over in a few attempts
   * within `closeMillis` of the host's time a batch (whatever the `Clock`);
   * entries the sink did not take are logged as an error, in full, so an
   * operator can write them by hand.
   */
  readonly flush: Effect.Effect<void> = Effect.suspend(() => {
    const next: Effect.Effect<void> = Effect.suspend(() => {
      if (this.backlog === 0) return Effect.void
      const batch = this.batch
      return Effect.matchEffect(this.lastWrite(batch), {
        onFailure: (error) =>
          Effect.logError(
            `${this.backlog} ledger entries were not written as the store closed: ${error.message}. ` +
              `They are charged; write them to the ledger by hand: ${JSON.stringify(this.entries.slice(this.head))}`
          ),
        onSuccess: () => Effect.andThen(Effect.sync(() => this.taken(batch.length)), next)
      })
    })
    return next
  })
}
