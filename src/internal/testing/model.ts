/**
 * A reference model of one budget, written plainly from DESIGN.md's
 * semantics, so property tests can compare a store with it after every step.
 * Money is in nano-dollars, as in the stores.
 */
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

  constructor(readonly tokenCap: number, readonly nanoCap: number) {}

  fits(tokens: number, nanos: number): boolean {
    return this.tokensUsed + this.tokensReserved + tokens <= this.tokenCap &&
      this.nanosUsed + this.nanosReserved + nanos <= this.nanoCap
  }

  record(tokens: number, nanos: number): boolean {
    if (!this.fits(tokens, nanos)) return false
    this.tokensUsed += tokens
    this.nanosUsed += nanos
    return true
  }

  /** The hold, or undefined when refused; a waiting hold joins the line. */
  reserve(tokens: number, nanos: number, wait: boolean): ModelHold | undefined {
    const hold: ModelHold = { tokens, nanos, generation: this.generation, state: "held", givenBack: false }
    if (wait) {
      if (tokens > this.tokenCap || nanos > this.nanoCap) return undefined
      if (this.line.length === 0 && this.fits(tokens, nanos)) return this.take(hold)
      hold.state = "waiting"
      this.line.push(hold)
      return hold
    }
    return this.fits(tokens, nanos) ? this.take(hold) : undefined
  }

  commit(hold: ModelHold, tokens: number, nanos: number): { tokensOverage: number; nanosOverage: number } {
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
