import { Clock, Effect, Exit, Option } from "effect"
import type { Fiber, Scope } from "effect"
import { type BudgetExceeded, BudgetUnavailable, type InvalidUsage, LedgerBacklogFull } from "../../BudgetError.ts"
import { type Labels, Sink } from "../../Ledger.ts"
import { noLabels } from "../labels.ts"
import { Outbox, registerBacklog } from "../outbox.ts"
import type { Settlement } from "../../Budget.ts"
import type { BudgetStore, Charge, Counters, Refusal, Settings, StoreBudget } from "../../BudgetStore.ts"
import { usdFromNanos } from "../../Usage.ts"
import { exceeded as refused, inexact } from "../refusal.ts"
import { committed, Hold, released, warnLateCommit } from "../reservation.ts"
import { limitsDiffer } from "../reconfigured.ts"
import { Subscribers } from "../subscribers.ts"
import { amountOf, refill } from "../rate.ts"
import { Ids } from "./ids.ts"
import {
  countersOf,
  crossThresholds,
  current,
  emit,
  exactLimit,
  bucketsFull,
  fits,
  giveRate,
  isEmpty,
  limitOf,
  makeNode,
  rateWait,
  reconfigure,
  restart,
  shortBucket,
  takeRate
} from "./node.ts"
import type { Node, Tree } from "./node.ts"
import { makeWaiter, type Waiter } from "./waitQueue.ts"

/*
 * Budgets in this process: a tree of counters, private to the store. Every
 * check-and-apply below is one synchronous step, which the fiber runtime
 * never splits, so no lock or transaction is needed (docs/design.md has the
 * figures behind that choice). A charge on a budget applies to it and every
 * ancestor in the same step, or to none.
 */

const timeOf = (fiber: Fiber.Fiber<unknown, unknown>): number => fiber.getRef(Clock.Clock).currentTimeMillisUnsafe()

/** Starts afresh every budget of `chain` whose window has ended. */
const roll = (chain: ReadonlyArray<Node>, now: number): void => {
  for (let i = 0; i < chain.length; i++) {
    const node = chain[i]!
    if (now >= node.windowEnd) {
      restart(node, now)
      wake(node)
    }
  }
}

/** The first budget of `chain` that does not admit the request at `now` (`holding`: a hold). */
const refuser = (
  chain: ReadonlyArray<Node>,
  tokens: number,
  nanos: number,
  now: number,
  holding: boolean
): Node | undefined => {
  for (let i = 0; i < chain.length; i++) {
    if (!fits(chain[i]!, tokens, nanos, now, holding)) return chain[i]
  }
  return undefined
}

/** Which limit of `node` refuses the request at `now`: its cap, its concurrency, or its rate. */
const refusalAt = (node: Node, tokens: number, nanos: number, now: number, holding: boolean): Refusal => {
  const budget = node.path
  const tokensAttempted = node.tokensUsed + node.tokensReserved + tokens
  if (tokensAttempted > limitOf(node.tokenCap)) {
    return { budget, axis: "tokens", requested: tokens, attempted: tokensAttempted, cap: limitOf(node.tokenCap) }
  }
  const nanosAttempted = node.nanosUsed + node.nanosReserved + nanos
  if (nanosAttempted > limitOf(node.nanoCap)) {
    return { budget, axis: "usd", requested: nanos, attempted: nanosAttempted, cap: limitOf(node.nanoCap) }
  }
  // Larger than a bucket holds comes first: no wait would do.
  const larger = largerThanBucket(node, tokens, nanos)
  if (holding && node.inFlight >= node.maxConcurrent && larger < 0) {
    const cap = node.maxConcurrent
    return { budget, limit: "concurrency", axis: "requests", requested: 1, attempted: node.inFlight + 1, cap }
  }
  const at = larger >= 0 ? larger : Math.max(0, shortBucket(node, tokens, nanos, now))
  const rate = node.rates[at]!
  refill(rate, node.buckets[at]!, now)
  const level = node.buckets[at]!.level
  const amount = amountOf(rate, tokens, nanos)
  return {
    budget,
    limit: "rate",
    axis: rate.axis,
    requested: amount,
    attempted: rate.capacity - level + amount,
    cap: rate.capacity,
    // When every rate of it and above will admit it (a retry sooner is
    // refused again); none where a bucket of them can never hold it.
    retryAfterMillis: tooLarge(node.chain, tokens, nanos) === undefined
      ? longestRateWait(node, tokens, nanos, now)
      : undefined
  }
}

/** How long until every rate of `node` and above admits the request; 0 if all do now. */
const longestRateWait = (node: Node, tokens: number, nanos: number, now: number): number => {
  let longest = 0
  for (const level of node.chain) {
    if (level.rates.length === 0) continue
    const wait = rateWait(level, tokens, nanos, now)
    if (wait !== Infinity) longest = Math.max(longest, wait)
  }
  return longest
}

/** The place of the first bucket of `node`'s rate that the request is larger than when full, or -1. */
const largerThanBucket = (node: Node, tokens: number, nanos: number): number => {
  const rates = node.rates
  for (let i = 0; i < rates.length; i++) {
    if (amountOf(rates[i]!, tokens, nanos) > rates[i]!.capacity) return i
  }
  return -1
}

const exceeded = (node: Node, tokens: number, nanos: number, now: number, holding: boolean): BudgetExceeded => {
  node.exceeded++
  const error = refused(refusalAt(node, tokens, nanos, now, holding))
  emit(node, () => ({
    _tag: "Exceeded",
    budget: error.budget,
    limit: error.limit,
    axis: error.axis,
    requested: error.requested,
    attempted: error.attempted,
    cap: error.cap,
    ...(error.retryAfter === undefined ? {} : { retryAfter: error.retryAfter })
  }))
  return error
}

// --- waiting ----------------------------------------------------------------
//
// Each budget has a line of the requests waiting on it, in order of arrival.
// A waiting request sits in the line of the first budget of its chain that
// holds it back: one whose cap it does not fit, or whose line has an earlier
// request in it. Only a line's head is ever woken, and only once room for it
// appears on its whole chain; it wakes the next as it leaves. Draining N
// waiters so costs O(N) in all, with no storm of fibers re-checking a cap
// that fits one of them.

interface MemoryWaiter extends Waiter {
  readonly origin: Node
  /** The time on its fiber's `Clock`, read only for a chain that needs it. */
  readonly now: () => number
}

/** The first budget of the waiter's chain that holds it back, if any. */
const holdsBack = (waiter: MemoryWaiter): Node | undefined => {
  const chain = waiter.origin.chain
  const now = waiter.origin.timed ? waiter.now() : 0
  for (let i = 0; i < chain.length; i++) {
    const node = chain[i]!
    const head = node.line.head
    if (head !== undefined && head !== waiter && head.seq < waiter.seq) return node
    if (!fits(node, waiter.tokens, waiter.nanos, now, true)) return node
  }
  return undefined
}

const lineOf = (node: Node, waiter: Waiter): void => {
  if (waiter.line === node.line) return
  waiter.line?.leave(waiter)
  node.line.join(waiter)
}

/**
 * Wakes the head of `node`'s line if room for it has appeared on its whole
 * chain. A head held back elsewhere now moves to that budget's line, and the
 * next head here is considered.
 */
const wake = (node: Node): void => {
  for (;;) {
    const head = node.line.head as MemoryWaiter | undefined
    if (head === undefined || head.woken) return
    // One that can never fit (a cap was lowered) is woken to fail.
    const blocker = tooLarge(head.origin.chain, head.tokens, head.nanos) ? undefined : holdsBack(head)
    if (blocker === node) {
      // Held back where time frees room: woken to set its timer again, to the instant as it is now.
      if (freedByTime(node)) resumeWaiter(head)
      return
    }
    if (blocker === undefined) return resumeWaiter(head)
    lineOf(blocker, head)
    // The head of a line time frees: woken to set its timer there.
    if (blocker.line.head === head && freedByTime(blocker)) resumeWaiter(head)
  }
}

/** Whether time frees room at `node` (a rate's refill, a window's end), which no fiber announces. */
const freedByTime = (node: Node): boolean => node.rates.length > 0 || node.windowEnd !== Infinity

const resumeWaiter = (waiter: Waiter): void => {
  waiter.woken = true
  const resume = waiter.resume
  waiter.resume = undefined
  resume?.()
}

/**
 * The first budget of `chain` whose cap, or whose rate's bucket, `tokens`
 * and `nanos` are larger than: no release, reset or refill could ever make
 * room.
 */
const tooLarge = (chain: ReadonlyArray<Node>, tokens: number, nanos: number): Node | undefined => {
  for (let i = 0; i < chain.length; i++) {
    const node = chain[i]!
    if (tokens > limitOf(node.tokenCap) || nanos > limitOf(node.nanoCap)) return node
    if (largerThanBucket(node, tokens, nanos) >= 0) return node
  }
  return undefined
}

// After the event of the charge itself, so a threshold follows its cause.
const crossAll = (chain: ReadonlyArray<Node>): void => {
  for (let i = 0; i < chain.length; i++) crossThresholds(chain[i]!)
}

const wakeChain = (chain: ReadonlyArray<Node>): void => {
  for (let i = 0; i < chain.length; i++) {
    if (chain[i]!.line.head !== undefined) wake(chain[i]!)
  }
}

/** A waiter leaving for good: the line it leaves may now serve its next head. */
const leave = (waiter: Waiter, node: Node | undefined): void => {
  if (waiter.line === undefined || node === undefined) return
  waiter.line.leave(waiter)
  wake(node)
}

// --- one tree ---------------------------------------------------------------

/**
 * The memory store: a tree per root name, kept for as long as the store
 * (a root's usage is not dropped while anyone could open it again).
 */
export const make: Effect.Effect<BudgetStore["Service"], never, Scope.Scope> = Effect.gen(function*() {
  const roots = new Map<string, Node>()
  const sink = yield* Effect.serviceOption(Sink)
  const ledger = Option.isSome(sink) ? new Outbox(sink.value) : undefined
  if (ledger !== undefined) {
    const unregister = registerBacklog(yield* Effect.context<never>(), { sink: ledger.sink.name }, () => ledger.backlog)
    // Added first, so it runs last: after the drain below is interrupted.
    yield* Effect.addFinalizer(() => Effect.andThen(ledger.flush, Effect.sync(unregister)))
    yield* Effect.forkScoped(ledger.drain)
  }
  yield* Effect.addFinalizer(() =>
    Effect.sync(() =>
      roots.forEach((root) => {
        unregisterAll(root)
        root.tree.hub.end()
      })
    )
  )
  const open = (settings: Settings) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      const met = roots.get(settings.name)
      if (met !== undefined) {
        yield* reopen(met, settings, now)
        return storeOf(met)
      }
      const tree: Tree = {
        hub: new Subscribers(),
        seq: 0,
        idle: new Set(),
        recorded: new Ids(),
        held: new Ids(),
        ledger
      }
      const context = yield* Effect.context<never>()
      const root = makeNode(settings, undefined, tree, now, settings.metrics ? context : undefined)
      roots.set(settings.name, root)
      return storeOf(root)
    })
  return { open }
})

/**
 * A budget opened again takes the options given last (reconfigure). Where
 * its limits changed, every waiter of the tree that can now never fit is
 * woken to fail (wherever it waits: behind another, or below); then its
 * lines and those above it are looked at.
 */
const reopen = (node: Node, settings: Settings, now: number): Effect.Effect<void> => {
  const changed = limitsDiffer(node, settings)
  const warning = reconfigure(node, settings, now)
  if (changed) failHopeless(node.chain[node.chain.length - 1]!)
  wakeChain(node.chain)
  return warning
}

/** Wakes every waiter in the lines of `node` and below that is larger than a limit of its chain. */
const failHopeless = (node: Node): void => {
  node.line.forEach((waiter) => {
    const { origin, tokens, nanos } = waiter as MemoryWaiter
    if (!waiter.woken && tooLarge(origin.chain, tokens, nanos) !== undefined) resumeWaiter(waiter)
  })
  for (const child of node.children.values()) failHopeless(child)
}

const unregisterAll = (node: Node): void => {
  node.unregister()
  for (const child of node.children.values()) unregisterAll(child)
}

/** The line `waiter` sits in, as the budget it belongs to. */
const nodeOfLine = (waiter: MemoryWaiter): Node | undefined => {
  const chain = waiter.origin.chain
  for (let i = 0; i < chain.length; i++) {
    if (chain[i]!.line === waiter.line) return chain[i]
  }
  return undefined
}

// --- holds --------------------------------------------------------------------

/** A hold in memory: settling it cannot fail, so closing is settling. */
class MemoryHold extends Hold {
  private settlement: Settlement | undefined = undefined

  /** Released: a reserve retried with its id takes a new hold. */
  get givenBack(): boolean {
    return this.settlement === released
  }

  constructor(
    readonly origin: Node,
    tokens: number,
    nanos: number,
    /** The generation of each budget of the chain when the hold was taken. */
    readonly generations: ReadonlyArray<number>,
    labels: Labels | undefined
  ) {
    super(tokens, nanos, labels)
  }

  // Only a chain with a window or a rate, or a charge for the ledger, needs
  // the time, and reading it costs a step; a dropped budget's chain is the
  // one of its path now.
  settle(charge: Charge | undefined): Effect.Effect<Settlement, InvalidUsage> {
    const settled = this.timed || (charge !== undefined && this.origin.tree.ledger !== undefined)
      ? Effect.withFiber((fiber) => this.settleAt(charge, timeOf(fiber)))
      : Effect.suspend(() => this.settleAt(charge, 0))
    return charge !== undefined && this.givenBack ? Effect.tap(settled, () => warnLateCommit(this.origin.path, charge)) : settled
  }

  get close(): Effect.Effect<void> {
    // Giving a hold back in memory cannot fail.
    return this.settle(undefined) as Effect.Effect<Settlement>
  }

  private settleAt(charge: Charge | undefined, now: number): Exit.Exit<Settlement, InvalidUsage> {
    if (this.settlement !== undefined && (charge === undefined || !this.givenBack)) return Exit.succeed(this.settlement)
    return charge === undefined ? Exit.succeed(this.giveBack(now)) : this.charge(charge, now)
  }

  private get timed(): boolean {
    return this.origin.timed || this.origin.dropped
  }

  /**
   * The budgets the hold settles on: its chain, but where its budget was
   * dropped (one holding nothing in flight), the budgets of its path now;
   * a level with none is left out.
   */
  private get chain(): ReadonlyArray<Node> {
    const chain = this.origin.chain
    if (!this.origin.dropped) return chain
    const now: Array<Node> = []
    for (let i = 0; i < chain.length; i++) {
      const node = current(chain[i]!)
      if (node !== undefined) now.push(node)
    }
    return now
  }

  /**
   * Where in the chain it was taken on `node`, the `i`th of `chain`, or -1
   * (a child opened again after the one it was taken on was dropped). It
   * holds a place in flight and its rate there.
   */
  private takenAt(node: Node, i: number): number {
    const taken = this.origin.chain
    return taken[i] === node ? i : taken.indexOf(node)
  }

  /** Whether the hold still holds reserved at `node`, taken there in its current generation. */
  private holdsAt(node: Node, at: number): boolean {
    return at >= 0 && this.generations[at] === node.generation
  }

  private giveBack(now: number): Settlement {
    this.settlement = released
    const chain = this.chain
    const hub = this.origin.tree.hub
    if (this.timed) roll(chain, now)
    for (let i = 0; i < chain.length; i++) {
      const node = chain[i]!
      node.released++
      const at = this.takenAt(node, i)
      if (at < 0) continue
      node.inFlight--
      if (node.rates.length > 0) giveRate(node, this.tokens, this.nanos, now)
      if (this.holdsAt(node, at)) {
        node.tokensReserved -= this.tokens
        node.nanosReserved -= this.nanos
      }
      if (node.line.head !== undefined) wake(node)
    }
    if (hub.listening) {
      hub.publish({ _tag: "Released", budget: this.origin.path, tokens: this.tokens, usd: this.usd, ...labelled(this) })
    }
    return released
  }

  private charge({ estimated, nanos, tokens }: Charge, now: number): Exit.Exit<Settlement, InvalidUsage> {
    const chain = this.chain
    const hub = this.origin.tree.hub
    if (this.timed) roll(chain, now)
    for (let i = 0; i < chain.length; i++) {
      const node = chain[i]!
      if (node.tokensUsed + tokens > exactLimit) return Exit.fail(inexact(node.path, "tokens", tokens))
      if (node.nanosUsed + nanos > exactLimit) return Exit.fail(inexact(node.path, "usd", nanos))
    }
    // The overage is the part beyond the hold that no free room covered,
    // at the budget of the chain where that part is largest.
    let tokensOverage = 0
    let nanosOverage = 0
    // A hold given back holds nothing: all of a late commit is excess.
    const holding = !this.givenBack
    for (let i = 0; i < chain.length; i++) {
      const node = chain[i]!
      const at = this.takenAt(node, i)
      // Its place in flight is free, and its rate takes the actual: what it
      // held and did not use back, what it used beyond as debt.
      const inFlight = holding && at >= 0
      if (inFlight) node.inFlight--
      if (node.rates.length > 0) {
        giveRate(node, (inFlight ? this.tokens : 0) - tokens, (inFlight ? this.nanos : 0) - nanos, now)
      }
      const held = holding && this.holdsAt(node, at)
      const heldTokens = held ? this.tokens : 0
      const heldNanos = held ? this.nanos : 0
      tokensOverage = Math.max(
        tokensOverage,
        tokens - heldTokens - Math.max(0, node.tokenCap - node.tokensUsed - node.tokensReserved)
      )
      nanosOverage = Math.max(
        nanosOverage,
        nanos - heldNanos - Math.max(0, node.nanoCap - node.nanosUsed - node.nanosReserved)
      )
      node.tokensReserved -= heldTokens
      node.nanosReserved -= heldNanos
      node.tokensUsed += tokens
      node.nanosUsed += nanos
      node.committed++
    }
    const settlement = committed(tokens, nanos, tokensOverage, nanosOverage)
    this.settlement = settlement
    const ledger = this.origin.tree.ledger
    if (ledger !== undefined) {
      ledger.push({
        id: ledger.nextId(),
        budget: this.origin.path,
        kind: "commit",
        tokens,
        nanos,
        tokensOverage,
        nanosOverage,
        estimated,
        labels: this.labels,
        at: now,
        windowEndsAt: windowEndsAt(this.origin)
      })
    }
    wakeChain(chain)
    if (hub.listening) hub.publish({ ...settlement, budget: this.origin.path, estimated, ...labelled(this) })
    crossAll(chain)
    return Exit.succeed(settlement)
  }
}

const hold = (origin: Node, tokens: number, nanos: number, labels: Labels | undefined): MemoryHold => {
  const chain = origin.chain
  const generations = new Array<number>(chain.length)
  for (let i = 0; i < chain.length; i++) {
    const node = chain[i]!
    node.tokensReserved += tokens
    node.nanosReserved += nanos
    node.inFlight++
    if (node.rates.length > 0) takeRate(node, tokens, nanos)
    generations[i] = node.generation
  }
  const hub = origin.tree.hub
  const taken = new MemoryHold(origin, tokens, nanos, generations, labels)
  if (hub.listening) {
    hub.publish({ _tag: "Reserved", budget: origin.path, tokens, usd: usdFromNanos(nanos), ...labelled(taken) })
  }
  return taken
}

// --- the ledger ---------------------------------------------------------------

/** An event's labels: none when the charge had none, so events without labels stay as they were. */
const labelled = (charge: { readonly labels: Labels }): { readonly labels?: Labels } =>
  charge.labels === noLabels ? {} : { labels: charge.labels }

const windowEndsAt = (origin: Node): number | undefined => origin.windowEnd === Infinity ? undefined : origin.windowEnd

/** New charges are refused while the outbox is at its bound; commits are still written. */
const backlogFull = (origin: Node, ledger: Outbox): BudgetUnavailable =>
  new BudgetUnavailable({
    budget: origin.path,
    cause: new LedgerBacklogFull({ sink: ledger.sink.name, backlog: ledger.backlog })
  })

// --- operations ---------------------------------------------------------------

// An id is read and written only when given: the time costs a step.
const record = (origin: Node, tokens: number, nanos: number, id: string | undefined, labels: Labels | undefined) =>
  Effect.withFiber((fiber): Effect.Effect<void, BudgetExceeded | BudgetUnavailable> => {
    const chain = origin.chain
    const ledger = origin.tree.ledger
    const now = origin.timed || id !== undefined || ledger !== undefined ? timeOf(fiber) : 0
    if (id !== undefined && origin.tree.recorded.get(id, now)) return Effect.void
    if (ledger?.full) return Effect.fail(backlogFull(origin, ledger))
    if (origin.timed) roll(chain, now)
    const refusing = refuser(chain, tokens, nanos, now, false)
    if (refusing !== undefined) return Effect.fail(exceeded(refusing, tokens, nanos, now, false))
    for (let i = 0; i < chain.length; i++) {
      const node = chain[i]!
      node.tokensUsed += tokens
      node.nanosUsed += nanos
      if (node.rates.length > 0) takeRate(node, tokens, nanos)
    }
    if (id !== undefined) origin.tree.recorded.set(id, true, now)
    if (ledger !== undefined) {
      ledger.push({
        // a key can charge again once forgotten (a day): the entry's id is its own
        id: id === undefined ? ledger.nextId() : `${id}@${ledger.nextId()}`,
        budget: origin.path,
        kind: "record",
        tokens,
        nanos,
        tokensOverage: 0,
        nanosOverage: 0,
        estimated: false,
        labels: labels ?? noLabels,
        at: now,
        windowEndsAt: windowEndsAt(origin)
      })
    }
    const hub = origin.tree.hub
    if (hub.listening) {
      hub.publish({ _tag: "Recorded", budget: origin.path, tokens, usd: usdFromNanos(nanos), ...labelled({ labels: labels ?? noLabels }) })
    }
    crossAll(chain)
    return Effect.void
  })

/** The hold a reserve with this id took, if it is held or committed (see StoreBudget). */
const heldBy = (origin: Node, id: string | undefined, now: number): Hold | undefined => {
  if (id === undefined) return undefined
  const known = origin.tree.held.get(id, now)
  return known === undefined || known.givenBack ? undefined : known
}

/** A new hold, kept under its id if it has one. */
const holdFor = (
  origin: Node,
  tokens: number,
  nanos: number,
  id: string | undefined,
  labels: Labels | undefined,
  now: number
): MemoryHold => {
  const taken = hold(origin, tokens, nanos, labels)
  if (id !== undefined) origin.tree.held.set(id, taken, now)
  return taken
}

const reserveNow = (origin: Node, tokens: number, nanos: number, id: string | undefined, labels: Labels | undefined) =>
  Effect.withFiber((fiber): Effect.Effect<Hold, BudgetExceeded | BudgetUnavailable> => {
    const now = origin.timed || id !== undefined ? timeOf(fiber) : 0
    const known = heldBy(origin, id, now)
    if (known !== undefined) return Effect.succeed(known)
    const ledger = origin.tree.ledger
    if (ledger?.full) return Effect.fail(backlogFull(origin, ledger))
    if (origin.timed) roll(origin.chain, now)
    const refusing = refuser(origin.chain, tokens, nanos, now, true)
    return refusing === undefined
      ? Effect.succeed(holdFor(origin, tokens, nanos, id, labels, now))
      : Effect.fail(exceeded(refusing, tokens, nanos, now, true))
  })

// Joins a line unless nothing holds the request back; only the wait itself
// is interruptible, so a hold taken here always reaches the caller.
const reserveWaiting = (
  origin: Node,
  tokens: number,
  nanos: number,
  id: string | undefined,
  labels: Labels | undefined
) =>
  Effect.withFiber((fiber): Effect.Effect<Hold, BudgetExceeded | BudgetUnavailable> => {
    const chain = origin.chain
    const now = () => timeOf(fiber)
    const known = heldBy(origin, id, now())
    if (known !== undefined) return Effect.succeed(known)
    const ledger = origin.tree.ledger
    if (ledger?.full) return Effect.fail(backlogFull(origin, ledger))
    if (origin.timed) roll(chain, now())
    const larger = tooLarge(chain, tokens, nanos)
    if (larger !== undefined) return Effect.fail(exceeded(larger, tokens, nanos, now(), true))
    const waiter: MemoryWaiter = Object.assign(makeWaiter(origin.tree.seq++, tokens, nanos), { origin, now })
    const first = holdsBack(waiter)
    if (first === undefined) return Effect.succeed(holdFor(origin, tokens, nanos, id, labels, now()))
    lineOf(first, waiter)
    const dispatcher = fiber.currentDispatcher
    const signal = Effect.interruptible(Effect.callback<void>((resume) => {
      if (waiter.woken) return resume(Effect.void)
      // Resumed from the scheduler, not inline: a chain of hand-overs
      // would otherwise grow the waker's stack.
      waiter.resume = () => dispatcher.scheduleTask(() => resume(Effect.void), 0)
      return Effect.sync(() => {
        waiter.resume = undefined
      })
    }))
    // Room that time frees (a window's end, a rate's refill) no other
    // fiber announces: a head held back by it sets a timer to the instant.
    const turn = Effect.suspend(() => {
      const node = nodeOfLine(waiter)
      if (node === undefined || node.line.head !== waiter) return signal
      const at = now()
      const millis = Math.min(node.windowEnd - at, node.rates.length > 0 ? rateWait(node, tokens, nanos, at) : Infinity)
      if (millis === Infinity) return signal
      // The timer as interruptible as the wait (the request runs uninterruptibly around it).
      return Effect.interruptible(Effect.asVoid(Effect.timeoutOption(signal, Math.max(0, millis))))
    })
    const loop: Effect.Effect<Hold, BudgetExceeded> = Effect.flatMap(turn, () => {
      if (origin.timed) roll(chain, now())
      const from = nodeOfLine(waiter)
      // A cap lowered while it waited: it can never fit.
      const larger = tooLarge(chain, tokens, nanos)
      if (larger !== undefined) {
        leave(waiter, from)
        return Effect.fail(exceeded(larger, tokens, nanos, now(), true))
      }
      const blocker = holdsBack(waiter)
      // A reserve with the same id took its hold meanwhile: that one.
      const taken = heldBy(origin, id, now())
      if (blocker === undefined || taken !== undefined) {
        waiter.line?.leave(waiter)
        const reservation = taken ?? holdFor(origin, tokens, nanos, id, labels, now())
        if (from !== undefined) wake(from)
        return Effect.succeed(reservation)
      }
      // Someone took the room between the wake-up and now: wait again.
      waiter.woken = false
      if (blocker.line !== waiter.line) {
        lineOf(blocker, waiter)
        if (from !== undefined) wake(from)
      }
      return loop
    })
    return Effect.onInterrupt(loop, () => Effect.sync(() => leave(waiter, nodeOfLine(waiter))))
  })

const child = (parent: Node, settings: Settings) =>
  Effect.withFiber((fiber) => {
    const now = timeOf(fiber)
    const tree = parent.tree
    sweep(tree, now)
    let node = parent.children.get(settings.name)
    let warning: Effect.Effect<void> = Effect.void
    if (node === undefined) {
      node = makeNode(settings, parent, tree, now, settings.metrics ? fiber.context : undefined)
      parent.children.set(settings.name, node)
    } else {
      warning = reopen(node, settings, now)
      tree.idle.delete(node)
    }
    node.users++
    const used = node
    const done = Effect.withFiber((closing) => {
      const now = timeOf(closing)
      if (--used.users === 0) used.idleSince = now
      release(used, now)
      return Effect.void
    })
    return Effect.andThen(warning, Effect.as(Effect.addFinalizer(() => done), storeOf(used)))
  })

/** One budget of a tree, as the service sees it. */
const storeOf = (origin: Node): StoreBudget => ({
  path: origin.path,
  record: (tokens, nanos, id, labels) => record(origin, tokens, nanos, id, labels),
  reserve: (tokens, nanos, wait, id, labels) =>
    wait ? reserveWaiting(origin, tokens, nanos, id, labels) : reserveNow(origin, tokens, nanos, id, labels),
  snapshot: Effect.withFiber((fiber) => {
    const now = origin.timed ? timeOf(fiber) : 0
    if (origin.timed) roll(origin.chain, now)
    return Effect.succeed(countersOf(origin, now))
  }),
  children: Effect.withFiber((fiber) => {
    const now = timeOf(fiber)
    roll(origin.chain, now)
    const listed: Array<readonly [string, Counters]> = []
    for (const child of origin.children.values()) {
      roll([child], now)
      listed.push([child.name, countersOf(child, now)])
    }
    return Effect.succeed(listed)
  }),
  reset: Effect.withFiber((fiber) => {
    restart(origin, timeOf(fiber))
    wake(origin)
    return Effect.void
  }),
  child: (settings) => child(origin, settings),
  get events() {
    return origin.tree.hub.stream(origin.path, () => origin.eventsDropped++)
  }
})

// --- the registry of children ---------------------------------------------
//
// A child lives while a scope uses it, or while it holds usage: dropping a
// child with usage would let a later child of the same name spend it again.
// So an unused child with usage waits in `idle`, in the order it went idle,
// until its window restarts it or its idle time-to-live runs out (then it
// forgets its usage; its ancestors keep theirs). Each lookup drops those
// that may go from the front of `idle`, and moves a few others to the back.

/**
 * Whether nothing keeps `node`: unused, nothing in flight, its rate's
 * buckets full (a child opened again starts full), and empty or idle past
 * its time-to-live with nothing held.
 */
const droppable = (node: Node, now: number): boolean =>
  node.parent !== undefined && node.users === 0 && node.children.size === 0 && node.line.head === undefined &&
  node.inFlight === 0 && bucketsFull(node, now) &&
  (isEmpty(node) ||
    (now - node.idleSince >= node.idleTtl && node.tokensReserved === 0 && node.nanosReserved === 0))

/** Drops `node` if nothing keeps it, then its parent if that left it bare. */
const release = (node: Node, now: number): void => {
  if (node.parent === undefined || node.users > 0) return
  roll([node], now)
  if (!droppable(node, now)) {
    node.tree.idle.add(node)
    return
  }
  node.tree.idle.delete(node)
  node.parent.children.delete(node.name)
  node.dropped = true
  node.unregister()
  release(node.parent, now)
}

const sweep = (tree: Tree, now: number): void => {
  let kept = 0
  for (const node of tree.idle) {
    tree.idle.delete(node)
    release(node, now)
    if (tree.idle.has(node) && ++kept === 2) return
  }
}
