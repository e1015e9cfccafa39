import { Effect } from "effect"
import type { Reservation, Settlement, Snapshot } from "../Budget.ts"
import { BudgetExceeded } from "../BudgetError.ts"
import { usageError, usdFromNanos, usdToNanos } from "../Usage.ts"
import type { Usage } from "../Usage.ts"
import type { BudgetStore } from "./store.ts"
import { type Waiter, WaitQueue } from "./waitQueue.ts"

/** Caps already validated; an unbounded axis is `Infinity`. */
export interface MemoryOptions {
  readonly name: string
  readonly tokenCap: number
  readonly nanoCap: number
}

/** A hold in memory: giving it back cannot fail. */
interface MemoryReservation extends Reservation {
  readonly release: Effect.Effect<Settlement>
}

const released: Settlement = { _tag: "Released", tokens: 0, usd: 0, tokensOverage: 0, usdOverage: 0 }

/**
 * A budget in this process. The counters are plain numbers private to the
 * store: every check-and-apply below is one synchronous step, which the fiber
 * runtime never splits, so no lock or transaction is needed (docs/design.md
 * has the figures behind that choice).
 */
export const make = (options: MemoryOptions): BudgetStore<MemoryReservation> => {
  const { name, nanoCap, tokenCap } = options
  let tokensUsed = 0
  let nanosUsed = 0
  let tokensReserved = 0
  let nanosReserved = 0
  // A reset starts a new generation; holds of an older one are stale.
  let generation = 0
  const line = new WaitQueue()

  const fits = (tokens: number, nanos: number): boolean =>
    tokensUsed + tokensReserved + tokens <= tokenCap && nanosUsed + nanosReserved + nanos <= nanoCap

  // For a request that does not fit: says which axis refused it.
  const exceeded = (tokens: number, nanos: number): BudgetExceeded => {
    const attempted = tokensUsed + tokensReserved + tokens
    return attempted > tokenCap
      ? new BudgetExceeded({ budget: name, axis: "tokens", requested: tokens, attempted, cap: tokenCap })
      : new BudgetExceeded({
        budget: name,
        axis: "usd",
        requested: usdFromNanos(nanos),
        attempted: usdFromNanos(nanosUsed + nanosReserved + nanos),
        cap: usdFromNanos(nanoCap)
      })
  }

  // Wakes the first waiter if room for it has appeared. Only the head is
  // woken, and it wakes the next when it leaves, so draining N waiters costs
  // O(N) in all: no storm of fibers re-checking a cap that fits one of them.
  const wakeHead = (): void => {
    const head = line.head
    if (head === undefined || head.woken || !fits(head.tokens, head.nanos)) return
    head.woken = true
    const resume = head.resume
    head.resume = undefined
    resume?.()
  }

  const leave = (waiter: Waiter): void => {
    if (line.leave(waiter)) wakeHead()
  }

  class Hold implements MemoryReservation {
    readonly usd: number
    private settlement: Settlement | undefined = undefined
    constructor(
      readonly tokens: number,
      readonly nanos: number,
      readonly generation: number
    ) {
      this.usd = usdFromNanos(nanos)
    }

    commit(actual?: Usage) {
      if (actual === undefined) return Effect.sync(() => this.settle(this.tokens, this.nanos))
      const invalid = usageError(actual, "actual")
      if (invalid !== undefined) return Effect.fail(invalid)
      const tokens = actual.tokens ?? this.tokens
      const nanos = actual.usd === undefined ? this.nanos : usdToNanos(actual.usd)
      return Effect.sync(() => this.settle(tokens, nanos))
    }

    get release() {
      return Effect.sync(() => {
        if (this.settlement !== undefined) return this.settlement
        this.settlement = released
        if (this.generation === generation) {
          tokensReserved -= this.tokens
          nanosReserved -= this.nanos
          wakeHead()
        }
        return released
      })
    }

    private settle(tokens: number, nanos: number): Settlement {
      if (this.settlement !== undefined) return this.settlement
      const current = this.generation === generation
      const heldTokens = current ? this.tokens : 0
      const heldNanos = current ? this.nanos : 0
      // The overage is the part beyond the hold that no free room covered.
      const tokensOverage = Math.max(0, tokens - heldTokens - Math.max(0, tokenCap - tokensUsed - tokensReserved))
      const nanosOverage = Math.max(0, nanos - heldNanos - Math.max(0, nanoCap - nanosUsed - nanosReserved))
      tokensReserved -= heldTokens
      nanosReserved -= heldNanos
      tokensUsed += tokens
      nanosUsed += nanos
      this.settlement = {
        _tag: "Committed",
        tokens,
        usd: usdFromNanos(nanos),
        tokensOverage,
        usdOverage: usdFromNanos(nanosOverage)
      }
      wakeHead()
      return this.settlement
    }
  }

  const hold = (tokens: number, nanos: number): Hold => {
    tokensReserved += tokens
    nanosReserved += nanos
    return new Hold(tokens, nanos, generation)
  }

  const record = (tokens: number, nanos: number) =>
    Effect.suspend(() => {
      if (!fits(tokens, nanos)) return Effect.fail(exceeded(tokens, nanos))
      tokensUsed += tokens
      nanosUsed += nanos
      return Effect.void
    })

  const reserveNow = (tokens: number, nanos: number) =>
    Effect.suspend(() => fits(tokens, nanos) ? Effect.succeed(hold(tokens, nanos)) : Effect.fail(exceeded(tokens, nanos)))

  // Joins the line unless it is empty and the hold fits; only the wait itself
  // is interruptible, so a hold taken here always reaches the caller.
  const reserveWaiting = (tokens: number, nanos: number) =>
    Effect.withFiber((fiber): Effect.Effect<Hold, BudgetExceeded> => {
      // Larger than the cap: no release or reset could ever make room.
      if (tokens > tokenCap || nanos > nanoCap) return Effect.fail(exceeded(tokens, nanos))
      if (line.head === undefined && fits(tokens, nanos)) return Effect.succeed(hold(tokens, nanos))
      const waiter = line.join(tokens, nanos)
      const turn = Effect.interruptible(Effect.callback<void>((resume) => {
        if (waiter.woken || (line.head === waiter && fits(tokens, nanos))) {
          resume(Effect.void)
          return
        }
        // Resumed from the scheduler, not inline: a chain of hand-overs
        // would otherwise grow the waker's stack.
        waiter.resume = () => fiber.currentDispatcher.scheduleTask(() => resume(Effect.void), 0)
        return Effect.sync(() => leave(waiter))
      }))
      const loop: Effect.Effect<Hold> = Effect.flatMap(turn, () => {
        if (line.head === waiter && fits(tokens, nanos)) {
          line.leave(waiter)
          const reservation = hold(tokens, nanos)
          wakeHead()
          return Effect.succeed(reservation)
        }
        // Someone took the room between the wake-up and now: wait again.
        waiter.woken = false
        return loop
      })
      return loop
    })

  const snapshot = Effect.sync((): Snapshot => ({
    name,
    tokensUsed,
    usdUsed: usdFromNanos(nanosUsed),
    tokensReserved,
    usdReserved: usdFromNanos(nanosReserved),
    tokenCap,
    usdCap: usdFromNanos(nanoCap),
    tokensRemaining: Math.max(0, tokenCap - tokensUsed - tokensReserved),
    usdRemaining: usdFromNanos(Math.max(0, nanoCap - nanosUsed - nanosReserved))
  }))

  const reset = Effect.sync(() => {
    tokensUsed = nanosUsed = tokensReserved = nanosReserved = 0
    generation++
    wakeHead()
  })

  return {
    record,
    reserve: (tokens, nanos, wait) => wait ? reserveWaiting(tokens, nanos) : reserveNow(tokens, nanos),
    releaseOnClose: (reservation) => reservation.release,
    snapshot,
    reset
  }
}
