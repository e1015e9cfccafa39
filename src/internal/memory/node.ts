import { Clock, Context, Effect } from "effect"
import type { Counters } from "../../BudgetStore.ts"
import type { BudgetEvent } from "../../BudgetEvent.ts"
import { usdFromNanos } from "../../Usage.ts"
import type { Subscribers } from "../subscribers.ts"
import type { Ids } from "./ids.ts"
import type { Hold } from "../reservation.ts"
import type { Outbox } from "../outbox.ts"
import { registerMetrics } from "../metrics.ts"
import { capsDiffer, limitsDiffer, reconfigured, warnLimitsChanged } from "../reconfigured.ts"
import { snapshotOf } from "../snapshot.ts"
import type { Settings } from "../../BudgetStore.ts"
import { WaitQueue } from "./waitQueue.ts"
import { amountOf, type Bucket, fullBucket, levelAt, type RateSetting, refill, sameRates, waitMillis } from "../rate.ts"
import { windowEnd, type WindowSchedule } from "../window.ts"

/** What every budget of one tree shares. */
export interface Tree {
  readonly hub: Subscribers
  /** Arrival order of waiting requests, across the tree. */
  seq: number
  /** Children nobody uses that still hold usage: swept on later lookups. */
  readonly idle: Set<Node>
  /** Idempotency keys of records that charged. */
  readonly recorded: Ids<true>
  /** Idempotency keys of reserves, with the hold each took. */
  readonly held: Ids<Hold & { readonly givenBack: boolean }>
  /** The store's ledger outbox, if a `Ledger.Sink` was in its context. */
  readonly ledger: Outbox | undefined
}

/**
 * One budget's counters, private to the memory store. Mutable on purpose:
 * the store changes them in single synchronous steps, which the fiber
 * runtime never splits.
 */
export interface Node {
  readonly name: string
  readonly path: string
  readonly parent: Node | undefined
  /** This budget, then its parent, up to the root: what a charge here touches. */
  readonly chain: ReadonlyArray<Node>
  /** Whether any budget of `chain` has a window or a rate, so operations need the time. */
  timed: boolean
  readonly tree: Tree
  readonly children: Map<string, Node>
  readonly line: WaitQueue
  tokenCap: number
  nanoCap: number
  window: WindowSchedule | undefined
  thresholds: ReadonlyArray<number>
  tokensUsed: number
  nanosUsed: number
  tokensReserved: number
  nanosReserved: number
  /** Bumped by every reset; holds of an older generation are stale. */
  generation: number
  /** Epoch milliseconds; `Infinity` without a window. */
  windowEnd: number
  /** Index of the next threshold to cross, per axis. */
  tokensThreshold: number
  nanosThreshold: number
  /** Counts for the metrics. */
  committed: number
  released: number
  exceeded: number
  /** Events its streams dropped, having fallen behind (subscribers.ts). */
  eventsDropped: number
  /** Its rate, a bucket per axis, and each bucket's level (rate.ts). */
  rates: ReadonlyArray<RateSetting>
  buckets: Array<Bucket>
  /** The most holds in flight at once at it and below, and how many are. */
  maxConcurrent: number
  inFlight: number
  /** Scopes using this budget; an unused, empty child is dropped. */
  users: number
  /** When the last scope using it closed (`Clock` milliseconds). */
  idleSince: number
  /** How long it may then sit idle, usage and all, before it is dropped. */
  idleTtl: number
  /** Dropped from its parent: a hold taken on it settles on the budget of its name now (`current`). */
  dropped: boolean
  /** Removes this budget's metrics from the registry. */
  unregister: () => void
}

export const makeNode = (
  settings: Settings,
  parent: Node | undefined,
  tree: Tree,
  now: number,
  metricsContext: Context.Context<never> | undefined
): Node => {
  const path = parent === undefined ? settings.name : `${parent.path}/${settings.name}`
  const node: Node = {
    name: settings.name,
    path,
    parent,
    chain: [],
    timed: settings.window !== undefined || settings.rates.length > 0 || (parent?.timed ?? false),
    tree,
    children: new Map(),
    line: new WaitQueue(),
    tokenCap: settings.tokenCap,
    nanoCap: settings.nanoCap,
    window: settings.window,
    thresholds: settings.thresholds,
    tokensUsed: 0,
    nanosUsed: 0,
    tokensReserved: 0,
    nanosReserved: 0,
    generation: 0,
    windowEnd: settings.window === undefined ? Infinity : windowEnd(settings.window, now),
    tokensThreshold: 0,
    nanosThreshold: 0,
    committed: 0,
    released: 0,
    exceeded: 0,
    eventsDropped: 0,
    rates: settings.rates,
    buckets: settings.rates.map((rate) => fullBucket(rate, now)),
    maxConcurrent: settings.maxConcurrent,
    inFlight: 0,
    users: 0,
    idleSince: now,
    idleTtl: settings.idleTtlMillis,
    dropped: false,
    unregister: noop
  }
  ;(node.chain as Array<Node>).push(node, ...(parent?.chain ?? []))
  if (metricsContext !== undefined) node.unregister = registerMetricsOf(node, metricsContext)
  return node
}

/**
 * A budget met again under the same name takes the options it is met with;
 * other caps than it had are an event, and the warning the caller logs.
 */
export const reconfigure = (node: Node, settings: Settings, now: number): Effect.Effect<void> => {
  const previous = { tokenCap: node.tokenCap, nanoCap: node.nanoCap, rates: node.rates, maxConcurrent: node.maxConcurrent }
  const changed = limitsDiffer(previous, settings)
  if (capsDiffer(previous, settings)) emit(node, () => reconfigured(node.path, previous, settings))
  node.tokenCap = settings.tokenCap
  node.nanoCap = settings.nanoCap
  node.thresholds = settings.thresholds
  node.idleTtl = settings.idleTtlMillis
  node.maxConcurrent = settings.maxConcurrent
  if (!sameRates(settings.rates, node.rates)) rerate(node, settings.rates, now)
  if (!node.timed && (settings.window !== undefined || settings.rates.length > 0)) timeAll(node)
  if (settings.window !== node.window) {
    node.window = settings.window
    node.windowEnd = settings.window === undefined ? Infinity : windowEnd(settings.window, now)
  }
  return changed ? warnLimitsChanged(node.path, previous, settings) : Effect.void
}

const noop = () => {}

/** A budget that gained a window or a rate, and every budget below it, need the time from now on. */
const timeAll = (node: Node): void => {
  node.timed = true
  for (const child of node.children.values()) timeAll(child)
}

/**
 * Takes the rate given last: a bucket of an axis it had keeps its level
 * (no fresh burst for opening a budget again), at most the new capacity.
 */
const rerate = (node: Node, rates: ReadonlyArray<RateSetting>, now: number): void => {
  node.buckets = rates.map((rate) => {
    const at = node.rates.findIndex((old) => old.axis === rate.axis)
    if (at < 0) return fullBucket(rate, now)
    refill(node.rates[at]!, node.buckets[at]!, now)
    return { level: Math.min(rate.capacity, node.buckets[at]!.level), at: now }
  })
  node.rates = rates
}
/**
 * The budget of `node`'s path as the tree has it now: `node` itself, or,
 * for one dropped, the child opened again under its name, if any.
 */
export const current = (node: Node): Node | undefined => {
  if (!node.dropped) return node
  const parent = node.parent === undefined ? undefined : current(node.parent)
  return parent?.children.get(node.name)
}

/**
 * The most a counter holds exactly (2^53 - 1 tokens or nano-dollars): an
 * axis without a cap is refused past it, as if it were its cap, rather
 * than rounded.
 */
export const exactLimit = Number.MAX_SAFE_INTEGER

/** What a request may take an axis up to: its cap, or the exact limit without one. */
export const limitOf = (cap: number): number => Math.min(cap, exactLimit)

/** Whether `node`'s caps admit `tokens` and `nanos`. */
export const capsFit = (node: Node, tokens: number, nanos: number): boolean =>
  node.tokensUsed + node.tokensReserved + tokens <= limitOf(node.tokenCap) &&
  node.nanosUsed + node.nanosReserved + nanos <= limitOf(node.nanoCap)

/**
 * The first bucket of `node`'s rate that does not hold what the request
 * takes at `now` (refilled to it), by its place; -1 if all do.
 */
export const shortBucket = (node: Node, tokens: number, nanos: number, now: number): number => {
  const rates = node.rates
  for (let i = 0; i < rates.length; i++) {
    const rate = rates[i]!
    const bucket = node.buckets[i]!
    refill(rate, bucket, now)
    if (bucket.level < amountOf(rate, tokens, nanos)) return i
  }
  return -1
}

/** Whether `node` admits the request at `now`: its caps, its rate and, for a hold, its concurrency. */
export const fits = (node: Node, tokens: number, nanos: number, now: number, holding: boolean): boolean =>
  capsFit(node, tokens, nanos) && (!holding || node.inFlight < node.maxConcurrent) &&
  (node.rates.length === 0 || shortBucket(node, tokens, nanos, now) < 0)

/** Takes an admitted request from `node`'s rate (refilled by `fits`). */
export const takeRate = (node: Node, tokens: number, nanos: number): void => {
  const rates = node.rates
  for (let i = 0; i < rates.length; i++) node.buckets[i]!.level -= amountOf(rates[i]!, tokens, nanos)
}

/**
 * Gives `tokens` and `nanos` back to `node`'s rate (negative: takes them,
 * as debt), up to each bucket's capacity; requests are never given back.
 */
export const giveRate = (node: Node, tokens: number, nanos: number, now: number): void => {
  const rates = node.rates
  for (let i = 0; i < rates.length; i++) {
    const rate = rates[i]!
    if (rate.axis === "requests") continue
    const bucket = node.buckets[i]!
    refill(rate, bucket, now)
    bucket.level = Math.min(rate.capacity, bucket.level + (rate.axis === "tokens" ? tokens : nanos))
  }
}

/** How long until `node`'s rate admits the request, if its rate is what holds it back; else `Infinity`. */
export const rateWait = (node: Node, tokens: number, nanos: number, now: number): number => {
  let longest = 0
  const rates = node.rates
  for (let i = 0; i < rates.length; i++) {
    const rate = rates[i]!
    const bucket = node.buckets[i]!
    refill(rate, bucket, now)
    longest = Math.max(longest, waitMillis(rate, bucket.level, amountOf(rate, tokens, nanos)))
  }
  return longest > 0 ? longest : Infinity
}

/** Whether every bucket of `node`'s rate is full at `now`: forgetting it would give nothing away. */
export const bucketsFull = (node: Node, now: number): boolean =>
  node.rates.every((rate, i) => levelAt(rate, node.buckets[i]!, now) >= rate.capacity)

export const isEmpty = (node: Node): boolean =>
  node.tokensUsed === 0 && node.nanosUsed === 0 && node.tokensReserved === 0 && node.nanosReserved === 0

/** Zeroes the counters and starts a new generation (and window, if it has one). */
export const restart = (node: Node, now: number): void => {
  node.tokensUsed = node.nanosUsed = node.tokensReserved = node.nanosReserved = 0
  node.tokensThreshold = node.nanosThreshold = 0
  node.generation++
  if (node.window !== undefined) node.windowEnd = windowEnd(node.window, now)
  emit(node, () => ({ _tag: "Reset", budget: node.path, windowEndsAt: windowEndsAt(node) }))
}

/** Publishes an event built only when someone listens. */
export const emit = (node: Node, event: () => BudgetEvent): void => {
  if (node.tree.hub.listening) node.tree.hub.publish(event())
}

/**
 * Fires each threshold that `used` has newly reached on either axis: a
 * charge crosses one by taking use from below threshold x cap to at least
 * it, so on an axis capped at 0 none ever is (as on Redis).
 */
export const crossThresholds = (node: Node): void => {
  const thresholds = node.thresholds
  while (
    node.tokensThreshold < thresholds.length && node.tokenCap > 0 &&
    node.tokensUsed >= thresholds[node.tokensThreshold]! * node.tokenCap
  ) {
    const threshold = thresholds[node.tokensThreshold++]!
    emit(node, () => ({
      _tag: "ThresholdCrossed",
      budget: node.path,
      axis: "tokens",
      threshold,
      used: node.tokensUsed,
      cap: node.tokenCap
    }))
  }
  while (
    node.nanosThreshold < thresholds.length && node.nanoCap > 0 &&
    node.nanosUsed >= thresholds[node.nanosThreshold]! * node.nanoCap
  ) {
    const threshold = thresholds[node.nanosThreshold++]!
    emit(node, () => ({
      _tag: "ThresholdCrossed",
      budget: node.path,
      axis: "usd",
      threshold,
      used: usdFromNanos(node.nanosUsed),
      cap: usdFromNanos(node.nanoCap)
    }))
  }
}

const windowEndsAt = (node: Node): number | undefined => node.window === undefined ? undefined : node.windowEnd

/** Its counters as of `now` (what its rate's buckets hold then). */
export const countersOf = (node: Node, now: number): Counters => ({
  tokensUsed: node.tokensUsed,
  nanosUsed: node.nanosUsed,
  tokensReserved: node.tokensReserved,
  nanosReserved: node.nanosReserved,
  tokenCap: node.tokenCap,
  nanoCap: node.nanoCap,
  windowEndsAt: windowEndsAt(node),
  rates: node.rates.map((rate, i) => ({ axis: rate.axis, level: levelAt(rate, node.buckets[i]!, now), capacity: rate.capacity })),
  maxConcurrent: node.maxConcurrent,
  inFlight: node.inFlight
})

// Read when exported, on the `Clock` the budget was made with.
const registerMetricsOf = (node: Node, context: Context.Context<never>): () => void => {
  const clock = Context.get(context, Clock.Clock)
  return registerMetrics(
    {
      path: node.path,
      snapshot: () => snapshotOf(node.path, countersOf(node, clock.currentTimeMillisUnsafe())),
      counts: node
    },
    node,
    context
  )
}
