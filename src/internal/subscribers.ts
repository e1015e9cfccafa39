import { Effect, Queue, Stream } from "effect"
import type { Cause, Scope } from "effect"
import type { BudgetEvent } from "../BudgetEvent.ts"

/*
 * The event streams of one budget tree in this process, in both stores.
 * Each subscriber has a buffer of its own, so one that falls behind costs
 * bounded memory and never slows the budget or the other subscribers: past
 * `eventBufferCapacity` waiting events, the oldest are dropped and counted.
 * When the store closes, the streams end (they are not interrupted).
 */

/**
 * The most events waiting for one subscriber: past it, the oldest are
 * dropped, each counted in `budget_events_dropped_total` (docs/observability.md).
 */
export const eventBufferCapacity = 10_000

/** One stream's buffer: the events of the budget at `path` and below. */
export class Subscriber {
  private readonly below: string

  constructor(
    readonly path: string,
    readonly queue: Queue.Queue<BudgetEvent, Cause.Done>,
    /** Counts an event dropped from a full buffer. */
    private readonly dropped: () => void
  ) {
    this.below = `${path}/`
  }

  offer(event: BudgetEvent): void {
    if (event.budget !== this.path && !event.budget.startsWith(this.below)) return
    if (Queue.sizeUnsafe(this.queue) >= eventBufferCapacity) this.dropped()
    Queue.offerUnsafe(this.queue, event)
  }
}

export class Subscribers {
  private readonly all = new Set<Subscriber>()
  private ended = false

  /** Whether any stream listens: with none, a store skips even building events. */
  get listening(): boolean {
    return this.all.size > 0
  }

  /** Offers `event` to every subscriber, each taking those of its budget and below. */
  publish(event: BudgetEvent): void {
    for (const subscriber of this.all) subscriber.offer(event)
  }

  /** A subscriber for as long as the scope lasts; one that comes after the end is ended at once. */
  subscribe(path: string, dropped: () => void): Effect.Effect<Subscriber, never, Scope.Scope> {
    return Effect.acquireRelease(
      Effect.map(Queue.sliding<BudgetEvent, Cause.Done>(eventBufferCapacity), (queue) => {
        const subscriber = new Subscriber(path, queue, dropped)
        if (this.ended) Queue.endUnsafe(queue)
        else this.all.add(subscriber)
        return subscriber
      }),
      (subscriber) => Effect.sync(() => this.all.delete(subscriber))
    )
  }

  /** The events a subscriber is offered, as a stream that ends with the store. */
  stream(path: string, dropped: () => void): Stream.Stream<BudgetEvent> {
    return Stream.unwrap(Effect.map(this.subscribe(path, dropped), (subscriber) => Stream.fromQueue(subscriber.queue)))
  }

  /** Ends every stream: the store closed. */
  end(): void {
    this.ended = true
    for (const subscriber of this.all) Queue.endUnsafe(subscriber.queue)
    this.all.clear()
  }
}
