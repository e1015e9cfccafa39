import { Effect, PubSub, Stream } from "effect"
import type { BudgetEvent } from "../../BudgetEvent.ts"

/**
 * The events of one budget tree. Publishing is synchronous, inside the step
 * that changed the counters, so events arrive in the order things happened;
 * with nobody subscribed, the store skips even building them.
 */
export class EventHub {
  private listeners = 0

  constructor(private readonly pubsub: PubSub.PubSub<BudgetEvent>) {}

  get listening(): boolean {
    return this.listeners > 0
  }

  publish(event: BudgetEvent): void {
    PubSub.publishUnsafe(this.pubsub, event)
  }

  /** Events of the budget at `path` and of every budget below it. */
  events(path: string): Stream.Stream<BudgetEvent> {
    const below = `${path}/`
    const counted = Effect.acquireRelease(
      Effect.sync(() => {
        this.listeners++
      }),
      () =>
        Effect.sync(() => {
          this.listeners--
        })
    )
    return Stream.unwrap(Effect.as(counted, Stream.fromPubSub(this.pubsub))).pipe(
      Stream.filter((event) => event.budget === path || event.budget.startsWith(below))
    )
  }
}
