/**
 * A first-come-first-served line of requests waiting for room. Intrusive and
 * doubly linked, so joining, leaving from any place and taking the head are
 * all O(1): an interrupted waiter leaves at once instead of lingering.
 */
export interface Waiter {
  readonly tokens: number
  readonly nanos: number
  /** Set once room was seen for it; it re-checks when it runs. */
  woken: boolean
  /** Present while its fiber is suspended waiting. */
  resume: (() => void) | undefined
  prev: Waiter | undefined
  next: Waiter | undefined
  queued: boolean
}

export class WaitQueue {
  private first: Waiter | undefined = undefined
  private last: Waiter | undefined = undefined

  get head(): Waiter | undefined {
    return this.first
  }

  join(tokens: number, nanos: number): Waiter {
    const waiter: Waiter = { tokens, nanos, woken: false, resume: undefined, prev: this.last, next: undefined, queued: true }
    if (this.last === undefined) this.first = waiter
    else this.last.next = waiter
    this.last = waiter
    return waiter
  }

  /** Removes `waiter` if it is still in line; returns whether it was first. */
  leave(waiter: Waiter): boolean {
    if (!waiter.queued) return false
    waiter.queued = false
    const wasFirst = waiter === this.first
    if (waiter.prev === undefined) this.first = waiter.next
    else waiter.prev.next = waiter.next
    if (waiter.next === undefined) this.last = waiter.prev
    else waiter.next.prev = waiter.prev
    waiter.prev = waiter.next = undefined
    return wasFirst
  }
}
