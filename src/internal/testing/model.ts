/**
 * A reference model of one budget, written plainly from DESIGN.md's
 * semantics, so property tests can compare a store with it after every step.
 * Money is in nano-dollars, as in the stores. With limits, it also keeps a
 * rate on tokens and requests (token buckets, refilled continuously as time
 * is advanced) and a most of holds in flight.
 */

/** A rate of tokens and requests a period, and a most of holds in flight. */
export interface ModelLimits {
  readonly tokens: number
  readonly requests: number
  readonly periodMillis: number
  readonly maxConcurrent: number
}
export interface ModelHold {
  readonly tokens: number
  readonly nanos: number
  generation: number
  state: "waiting" | "held" | "settled"
  /** Released while held: a later commit charges all of its actual as excess. */
  givenBack: boolean
}

export class Model {
  tokensUsed = 0
  nanosUsed = 0
  tokensReserved = 0
  nanosReserved = 0
  generation = 0
  tokensOverage = 0
  nanosOverage = 0
  readonly line: Array<ModelHold> = []
  /** With limits: the time (ms), the buckets' levels as of it, and the holds in flight. */
  now = 0
  tokenLevel: number
  requestLevel: number
  inFlight = 0

  constructor(readonly tokenCap: number, readonly nanoCap: number, readonly limits?: ModelLimits) {
    this.tokenLevel = limits?.tokens ?? 0
    this.requestLevel = limits?.requests ?? 0
  }

  fits(tokens: number, nanos: number, holding = true): boolean {
    const limits = this.limits
    return this.tokensUsed + this.tokensReserved + tokens <= this.tokenCap &&
      this.nanosUsed + this.nanosReserved + nanos <= this.nanoCap &&
      (limits === undefined ||
        ((!holding || this.inFlight < limits.maxConcurrent) && this.tokenLevel >= tokens && this.requestLevel >= 1))
  }

  record(tokens: number, nanos: number): boolean {
    if (!this.fits(tokens, nanos, false)) return false
    this.tokensUsed += tokens
    this.nanosUsed += nanos
    this.tokenLevel -= tokens
    this.requestLevel -= 1
    return true
  }

  /** Time passes: each waiter the buckets' refill lets in is served at its instant, in order. */
  advance(millis: number): void {
    const end = this.now + millis
    for (;;) {
      const head = this.line[0]
      const at = head === undefined ? Infinity : this.now + this.refillWait(head.tokens)
      if (at > end) break
      this.refill(at)
      this.drain()
      if (this.line[0] === head) break
    }
    this.refill(end)
  }

  /** How long until the head of the line is let in by the rate's refill; `Infinity` if the rate is not what holds it back. */
  headWait(): number {
    const head = this.line[0]
    return head === undefined ? Infinity : this.refillWait(head.tokens)
  }

  private refillWait(tokens: number): number {
    const limits = this.limits
    if (limits === undefined) return Infinity
    const wait = (level: number, amount: number, rate: number) =>
      level >= amount ? 0 : Math.ceil((amount - level) * limits.periodMillis / rate)
    const longest = Math.max(wait(this.tokenLevel, tokens, limits.tokens), wait(this.requestLevel, 1, limits.requests))
    // Held back by a cap or by holds in flight, not by the rate: no instant of its own.
    return longest === 0 ? Infinity : longest
  }

  private refill(to: number): void {
    const limits = this.limits
    if (limits !== undefined) {
      const elapsed = to - this.now
      this.tokenLevel = Math.min(limits.tokens, this.tokenLevel + elapsed * limits.tokens / limits.periodMillis)
      this.requestLevel = Math.min(limits.requests, this.requestLevel + elapsed * limits.requests / limits.periodMillis)
    }
    this.now = to
  }

  /** What the rate gets back from a hold settled for `tokens` (negative: debt). */
  private giveTokens(tokens: number): void {
    if (this.limits !== undefined) this.tokenLevel = Math.min(this.limits.tokens, this.tokenLevel + tokens)
  }

  /** The hold, or undefined when refused; a waiting hold joins the line. */
  reserve(tokens: number, nanos: number, wait: boolean): ModelHold | undefined {
    const hold: ModelHold = { tokens, nanos, generation: this.generation, state: "held", givenBack: false }
    if (wait) {
      // Larger than a cap, or than the bucket holds: nothing could ever make room.
      if (tokens > this.tokenCap || nanos > this.nanoCap || tokens > (this.limits?.tokens ?? Infinity)) return undefined
      if (this.line.length === 0 && this.fits(tokens, nanos)) return this.take(hold)
      hold.state = "waiting"
      this.line.push(hold)
      return hold
    }
    return this.fits(tokens, nanos) ? this.take(hold) : undefined
  }

  commit(hold: ModelHold, tokens: number, nanos: number): { tokensOverage: number; nanosOverage: number } {
    // Its place in flight is free; the rate gets back what it held and did not use.
    if (!hold.givenBack) this.inFlight--
    this.giveTokens((hold.givenBack ? 0 : hold.tokens) - tokens)
    const current = !hold.givenBack && hold.generation === this.generation
    const heldTokens = current ? hold.tokens : 0
    const heldNanos = current ? hold.nanos : 0
    const tokensOverage = Math.max(0, tokens - heldTokens - Math.max(0, this.tokenCap - this.tokensUsed - this.tokensReserved))
    const nanosOverage = Math.max(0, nanos - heldNanos - Math.max(0, this.nanoCap - this.nanosUsed - this.nanosReserved))
    this.tokensReserved -= heldTokens
    this.nanosReserved -= heldNanos
    this.tokensUsed += tokens
    this.nanosUsed += nanos
    this.tokensOverage += tokensOverage
    this.nanosOverage += nanosOverage
    hold.state = "settled"
    this.drain()
    return { tokensOverage, nanosOverage }
  }

  /** A release, a scope closing, or an interruption: all give the hold back. */
  release(hold: ModelHold): void {
    if (hold.state === "waiting") {
      this.line.splice(this.line.indexOf(hold), 1)
    } else if (hold.state === "held") {
      hold.givenBack = true
      this.inFlight--
      this.giveTokens(hold.tokens)
      if (hold.generation === this.generation) {
        this.tokensReserved -= hold.tokens
        this.nanosReserved -= hold.nanos
      }
    }
    hold.state = "settled"
    this.drain()
  }

  reset(): void {
    this.tokensUsed = this.nanosUsed = this.tokensReserved = this.nanosReserved = 0
    this.generation++
    this.drain()
  }

  private take(hold: ModelHold): ModelHold {
    this.tokensReserved += hold.tokens
    this.nanosReserved += hold.nanos
    this.inFlight++
    this.tokenLevel -= hold.tokens
    this.requestLevel -= 1
    hold.generation = this.generation
    hold.state = "held"
    return hold
  }

  // First come, first served: grant from the head while it fits.
  private drain(): void {
    while (this.line.length > 0 && this.fits(this.line[0]!.tokens, this.line[0]!.nanos)) {
      this.take(this.line.shift()!)
    }
  }
}
