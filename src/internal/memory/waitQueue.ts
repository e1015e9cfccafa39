/**
 * A line of requests waiting for room at one budget, in order of arrival.
 * Intrusive and doubly linked: joining at the back, leaving from any place
 * and reading the head are O(1). A waiter that moves here from another
 * budget's line takes its place by arrival, walking from the back.
 */
export interface Waiter {
  /** Arrival order in the budget tree: lower came first. */
  readonly seq: number
  readonly tokens: number
  readonly nanos: number
  /** Set once room was seen for it; it re-checks when it runs. */
  woken: boolean
  /** Present while its fiber is suspended waiting. */
  resume: (() => void) | undefined
  prev: Waiter | undefined
  next: Waiter | undefined
  /** The line it is in, if any. */
  line: WaitQueue | undefined
}

/** A waiter in no line yet. */
export const makeWaiter = (seq: number, tokens: number, nanos: number): Waiter => ({
  seq,
  tokens,
  nanos,
  woken: false,
  resume: undefined,
  prev: undefined,
  next: undefined,
  line: undefined
})

export class WaitQueue {
  private first: Waiter | undefined = undefined
  private last: Waiter | undefined = undefined

  get head(): Waiter | undefined {
    return this.first
  }

  join(waiter: Waiter): void {
    let after = this.last
    while (after !== undefined && after.seq > waiter.seq) after = after.prev
    waiter.prev = after
    waiter.next = after === undefined ? this.first : after.next
    if (waiter.prev === undefined) this.first = waiter
    else waiter.prev.next = waiter
    if (waiter.next === undefined) this.last = waiter
    else waiter.next.prev = waiter
    waiter.line = this
  }

  forEach(f: (waiter: Waiter) => void): void {
    for (let waiter = this.first; waiter !== undefined; waiter = waiter.next) f(waiter)
  }

  leave(waiter: Waiter): void {
    if (waiter.prev === undefined) this.first = waiter.next
    else waiter.prev.next = waiter.next
    if (waiter.next === undefined) this.last = waiter.prev
    else waiter.next.prev = waiter.prev
    waiter.prev = waiter.next = waiter.line = undefined
  }
}
