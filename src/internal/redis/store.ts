import { Cron, Effect, Exit, FiberSet, Queue } from "effect"
import * as Redis from "effect/persistence/Redis"
import type { Settlement } from "../../Budget.ts"
import { BudgetUnavailable } from "../../BudgetError.ts"
import type { BudgetExceeded, InvalidUsage, LimitAxis } from "../../BudgetError.ts"
import type { RateSetting } from "../rate.ts"
import type { BudgetStore, Charge, Counters, Settings, StoreBudget } from "../../BudgetStore.ts"
import type { Labels, Sink, Totals } from "../../Ledger.ts"
import { LedgerBacklogFull } from "../../BudgetError.ts"
import { LedgerUnavailable } from "../../Ledger.ts"
import { type Drainer, makeDrainer } from "./drain.ts"
import { registerBacklog } from "../outbox.ts"
import { exceeded as refused, inexact } from "../refusal.ts"
import { committed, Hold, released, warnLateCommit } from "../reservation.ts"
import { noLabels } from "../labels.ts"
import { warnLimitsChanged } from "../reconfigured.ts"
import { reportFailure } from "../report.ts"
import { deadline } from "./deadline.ts"
import * as HostTime from "../hostTime.ts"
import { events } from "./events.ts"
import * as Batch from "./batch.ts"
import { onLost, remakeThen } from "./lost.ts"
import { Subscribers } from "../subscribers.ts"
import { Outage } from "./outage.ts"
import { Renewals } from "./renewals.ts"
import { count, observed, watch } from "./metrics.ts"
import type { Watching } from "./metrics.ts"
import * as Scripts from "./scripts.ts"

/*
 * Budgets kept in Redis, shared by every process that reaches them. Each
 * operation is one script round trip (scripts.ts; the hot ones share
 * theirs with those sent together, batch.ts), and so is the ordering
 * of waiters; this side only shapes arguments and results, renews the
 * leases of this process's holds and tickets, and wakes its waiters when
 * their ticket is called.
 */

export interface RedisOptions {
  /** Prefix of every key; a budget tree's keys share the hash tag of its root name. */
  readonly prefix: string
  /** How long a hold outlives a process that stops renewing it. */
  readonly leaseMillis: number
  /** How long one round trip may take before it fails with `BudgetUnavailable`. */
  readonly timeoutMillis: number
  /** What an operation that finds its budget's state lost does (lost.ts). */
  readonly onStateLost: "fail" | "recreate" | "restore"
  /** How long an idempotency key is kept. */
  readonly idTtlMillis: number
  /** Where the ledger goes: a tree opened with one keeps an outbox in Redis, drained to it (drain.ts). */
  readonly sink: Sink["Service"] | undefined
  /** What the ledger says a budget spent: a lost budget is rebuilt from it (onStateLost "restore"). */
  readonly totals: Totals["Service"] | undefined
}

/** What the budgets of one tree share in this process. */
interface Tree {
  readonly key: string
  readonly redis: Redis.Redis["Service"]
  readonly options: RedisOptions
  /** Sends the hot operations, in batches. */
  readonly batcher: Batch.Batcher
  /** Forks the tree's background work: interrupted when the tree's scope closes. */
  readonly fork: Batch.Fork
  /** Holds of this process, renewed until settled. */
  readonly live: Renewals
  /** The id of this process's next hold. */
  readonly nextId: () => string
  /**
   * Tickets of this process's waiting requests, renewed while they wait:
   * each with how to wake it while it waits for its turn.
   */
  readonly tickets: Map<string, (() => void) | undefined>
  /** Tickets called while no waiter here was waiting on them: the reply that names one may come later. */
  readonly called: Set<string>
  /** This process's name in `<tree>:listeners` while it streams events. */
  readonly process: string
  /** Budgets of the tree whose metrics this process reports. */
  readonly watching: Watching
  /** When this process last said a budget was lost, by path. */
  readonly lost: Map<string, number>
  /** Whether Redis answers, shared by the trees of one store: an outage is said once. */
  readonly outage: Outage
  /** The budgets this process has open, by path, and how many times. */
  readonly open: Map<string, number>
  /** This process's event streams of the tree: ended when the tree's scope closes. */
  readonly subscribers: Subscribers
  /** Drains the tree's ledger outbox to the store's sink, if it has one. */
  readonly drainer: Drainer | undefined
}

interface Level {
  readonly path: string
  readonly key: string
  /** What it was opened with: what it is made again with if its state is lost. */
  readonly settings: Settings
  /** Why an operation on this budget failed, when Redis did not answer. */
  readonly unavailable: (error: Redis.RedisError) => BudgetUnavailable
}

// A settlement is kept long after its lease could have run out, so a retry
// of a commit whose reply was lost finds it.
const keepMillis = (options: RedisOptions) => Math.max(60_000, options.leaseMillis * 10)

const settlementOf = (
  result: readonly ["r"] | readonly ["c", string, string, string, string]
): Settlement =>
  result[0] === "r" ? released : committed(Number(result[1]), Number(result[2]), Number(result[3]), Number(result[4]))

/** An idempotency key's hold id: never one of a process's own (hex digits and a dot). */
const holdIdOf = (id: string) => `k:${id}`

/** How many words a budget's counters take in a script's answer (S.counters). */
const countersLength = 11

/** A budget's counters from the words of a script's answer, from `at`. */
const countersOf = (answer: ReadonlyArray<string>, at: number): Counters => {
  const [tu, nu, tr, nr, tc, nc, wlen, wend, mc, inFlight, buckets] = answer.slice(at, at + countersLength)
  return {
    tokensUsed: Number(tu),
    nanosUsed: Number(nu),
    tokensReserved: Number(tr),
    nanosReserved: Number(nr),
    tokenCap: capOf(tc!),
    nanoCap: capOf(nc!),
    windowEndsAt: Number(wlen) !== 0 ? Number(wend) : undefined,
    rates: buckets === undefined || buckets === "" ? [] : buckets.split(";").map((bucket) => {
      const [axis, level, capacity] = bucket.split(":")
      return { axis: axis as LimitAxis, level: Number(level), capacity: Number(capacity) }
    }),
    maxConcurrent: capOf(mc ?? "-1"),
    inFlight: Number(inFlight ?? 0)
  }
}

/** A charge's labels as the scripts keep them: JSON text, "" for none. */
const labelsText = (labels: Labels | undefined): string =>
  labels === undefined || labels === noLabels ? "" : JSON.stringify(labels)

/** New charges are refused while the tree's ledger outbox is at its bound. */
const backlogged = (tree: Tree, path: string, result: Scripts.Backlogged): BudgetUnavailable =>
  new BudgetUnavailable({
    budget: path,
    cause: new LedgerBacklogFull({ sink: tree.options.sink?.name ?? "(none in this process)", backlog: Number(result[1]) })
  })

const unavailable = (path: string) => (error: Redis.RedisError) => new BudgetUnavailable({ budget: path, cause: error.cause })

/**
 * One round trip, bounded by the store's timeout: a Redis that is down or
 * unreachable is a `BudgetUnavailable`, not a wait. (A client may queue a
 * command while it reconnects and run it later: scripts that hold or settle
 * carry ids, so a late run is harmless; see docs/distributed.md.)
 */
const reach = <A>(
  tree: Tree,
  path: string,
  script: Effect.Effect<A, Redis.RedisError>,
  millis = tree.options.timeoutMillis
) =>
  deadline(script, millis, Batch.noReply(millis)).pipe(
    Effect.onExit((exit) => tree.outage.seen(exit) ?? Effect.void),
    Effect.mapError(unavailable(path))
  )

/** A hot operation on `level`, in this process's next batch: bounded likewise. */
const send = <O extends Batch.Operation>(tree: Tree, level: Level, operation: O) =>
  tree.batcher.run(operation, level.unavailable)

/** A hold in Redis: a lease, renewed by this process until settled. */
class RedisHold extends Hold {
  /** Settled in a reply this process had: no round trip is needed to know it. */
  private settlement: Settlement | undefined = undefined
  /** A commit sent that has had no reply: the closing scope retries it, not a release. */
  private pending: Charge | undefined = undefined
  /** Its lease is renewed by this process, for this holder. */
  private renewing: boolean
  /**
   * The id its settlement is kept under: its own, but for a commit after
   * its release under an idempotency key, which another hold may have
   * taken since: then an id of this commit's own, so it charges as a hold
   * that holds nothing, once, and never settles that other hold.
   */
  private settledAs: string
  constructor(
    readonly tree: Tree,
    /** The budget it was taken on, and those above it. */
    readonly chain: ReadonlyArray<Level>,
    /** The key of every level of its chain, shared by the holds of one budget. */
    readonly keys: ReadonlyArray<string>,
    /** The path of every level of its chain, likewise. */
    readonly paths: ReadonlyArray<string>,
    readonly id: string,
    tokens: number,
    nanos: number,
    labels: Labels | undefined,
    /** Known already: a reserve with an idempotency key met a hold committed under it. */
    settlement?: Settlement
  ) {
    super(tokens, nanos, labels)
    this.settlement = settlement
    this.renewing = settlement === undefined
    this.settledAs = id
  }

  private stopRenewing(): void {
    if (!this.renewing) return
    this.renewing = false
    this.tree.live.remove(this.settledAs)
  }

  // Remembered when it runs, not when it is built: only a commit sent for
  // real turns the scope's release into a retried commit.
  settle(charge: Charge | undefined): Effect.Effect<Settlement, BudgetUnavailable | InvalidUsage> {
    return this.settleOnce(charge, true)
  }

  /** A settlement; if the budget is lost, made again and tried once more on a first try, if the store says so. */
  private settleOnce(charge: Charge | undefined, firstTry: boolean): Effect.Effect<Settlement, BudgetUnavailable | InvalidUsage> {
    return Effect.suspend(() => {
      // A commit after a release charges all the same (the usage happened).
      const late = charge !== undefined && this.settlement?._tag === "Released"
      if (this.settlement !== undefined && !late) return Effect.succeed(this.settlement)
      if (charge !== undefined) this.pending ??= charge
      if (late && this.settledAs === this.id && this.id.startsWith("k:")) {
        this.settledAs = `${this.id}#late:${this.tree.nextId()}`
      }
      // Renewed again until answered, so its settlement is kept for a retry;
      // not past a failure, with no scope left to end it.
      if (late && !this.renewing) {
        this.renewing = true
        this.tree.live.add(this.settledAs)
      }
      const operation: Extract<Batch.Operation, { readonly _tag: "Commit" | "Release" }> = charge === undefined
        ? { _tag: "Release", chain: this.keys, id: this.id }
        : { _tag: "Commit", chain: this.keys, id: this.settledAs, ...charge, labels: labelsText(this.labels) }
      const sent = late
        ? Effect.tapError(send(this.tree, this.chain[0]!, operation), () => Effect.sync(() => this.stopRenewing()))
        : send(this.tree, this.chain[0]!, operation)
      return Effect.flatMap(sent, (result) => {
        if (result[0] === "l") {
          return onLost(this.tree, this.paths, result[1], remake(this.tree, this.chain), firstTry ? this.settleOnce(charge, false) : undefined)
        }
        if (result[0] === "i") {
          // Only a commit is past the limit. Nothing was charged: the hold
          // stays, for a release or a smaller commit.
          this.pending = undefined
          const [, axis, level] = result
          const amount = axis === "tokens" ? charge?.tokens : charge?.nanos
          return Effect.fail(inexact(this.paths[Number(level) - 1]!, axis, amount ?? 0))
        }
        if (charge !== undefined) this.tree.drainer?.wake()
        if (this.settlement === undefined || late) {
          this.settlement = settlementOf(result)
          count(this.tree.watching, this.paths, this.settlement._tag === "Committed" ? "committed" : "released")
        }
        this.stopRenewing()
        return late ? Effect.as(warnLateCommit(this.chain[0]!.path, charge), this.settlement) : Effect.succeed(this.settlement)
      })
    })
  }

  /** If Redis still cannot be reached, the lease runs out instead. */
  get close(): Effect.Effect<void> {
    return Effect.suspend(() =>
      this.settlement !== undefined ? Effect.void : this.settle(this.pending).pipe(
        reportFailure(`Budget "${this.chain[0]!.path}": a closing scope could not settle its hold; it lapses with its lease`),
        Effect.ensuring(Effect.sync(() => this.stopRenewing()))
      )
    )
  }
}

const exceeded = (
  tree: Tree,
  chain: ReadonlyArray<Level>,
  refusal: Extract<Scripts.ChargeResult, readonly ["x", ...Array<unknown>]>,
  tokens: number,
  nanos: number
): BudgetExceeded => {
  const [, axis, taken, cap, level, limit, retry] = refusal
  const budget = chain[Number(level) - 1]!.path
  count(tree.watching, [budget], "exceeded")
  const requested = axis === "tokens" ? tokens : axis === "usd" ? nanos : 1
  return refused({
    budget,
    limit,
    axis,
    requested,
    attempted: Number(taken) + requested,
    cap: Number(cap),
    retryAfterMillis: retry === "-" || retry === undefined ? undefined : Number(retry)
  })
}

const capArg = (cap: number) => cap === Infinity ? -1 : cap

const axisLetter = { tokens: "t", usd: "n", requests: "q" } as const

/** A rate as the scripts keep it (lua/rates.ts): "<axis>:<amount>:<period ms>:<capacity>" joined by ";". */
const rateArg = (rates: ReadonlyArray<RateSetting>): string =>
  rates.map((rate) => `${axisLetter[rate.axis]}:${rate.amount}:${rate.periodMillis}:${rate.capacity}`).join(";")

const axisOf = { t: "tokens", n: "usd", q: "requests" } as const

/** A rate as `rateArg` wrote it. */
const ratesOf = (rate: string): ReadonlyArray<RateSetting> =>
  rate === "" ? [] : rate.split(";").map((bucket) => {
    const [axis, amount, periodMillis, capacity] = bucket.split(":")
    return {
      axis: axisOf[axis as keyof typeof axisOf],
      amount: Number(amount),
      periodMillis: Number(periodMillis),
      capacity: Number(capacity)
    }
  })

/** A cap as the scripts keep it: -1 for none. */
const capOf = (cap: string) => Number(cap) < 0 ? Infinity : Number(cap)

/**
 * A cron window's coming ends, as this host's clock sees them: a minute
 * back (clocks of a fleet disagree a little, and the scripts drop the ends
 * Redis's clock has passed) to 64 ends ahead. The wall clock, not `Clock`:
 * the scripts compare these ends with Redis's time, which no `TestClock`
 * moves.
 */
const cronEnds = (cron: Cron.Cron): Array<number> => {
  const now = Date.now()
  const ends: Array<number> = []
  let ahead = 0
  for (let at = now - 60_000; ahead < 64 && ends.length < 256;) {
    at = Cron.next(cron, at).getTime()
    ends.push(at)
    if (at > now) ahead++
  }
  return ends
}

/**
 * Keeps a budget's cron window supplied with coming ends while this process
 * has it open: half way through the ends it wrote, it writes the next.
 */
const extendEnds = (tree: Tree, keys: ReadonlyArray<string>, cron: Cron.Cron, ends: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    let last = ends
    for (;;) {
      yield* HostTime.sleep(Math.max(1_000, last[Math.floor(last.length / 2)]! - Date.now()))
      last = cronEnds(cron)
      yield* tree.redis.eval(Scripts.extend)(keys, tree.key, last).pipe(
        reportFailure(`Budget tree "${tree.key}": could not write a cron window's coming ends; retried at the next`)
      )
    }
  })

/**
 * Ids for the holds of one process: 64 random bits, so no two processes
 * share them, and a count. Shorter and cheaper to make than a UUID each,
 * and as unique.
 */
const idsOfProcess = (): () => string => {
  const [high, low] = crypto.getRandomValues(new Uint32Array(2))
  const prefix = `${high!.toString(16).padStart(8, "0")}${low!.toString(16).padStart(8, "0")}.`
  let count = 0
  return () => prefix + (count++).toString(36)
}

/** The Redis store: `open` reaches a tree's root, shared by every process that opens it. */
export const make = (options: RedisOptions): Effect.Effect<BudgetStore["Service"], never, Redis.Redis> =>
  Effect.map(Redis.Redis, (redis) => {
    const outage = new Outage()
    return { open: (settings: Settings) => open(redis, settings, options, outage) }
  })

const open = (redis: Redis.Redis["Service"], settings: Settings, options: RedisOptions, outage: Outage) =>
  Effect.gen(function*() {
    const key = `${options.prefix}{${encodeURIComponent(settings.name)}}`
    const fork: Batch.Fork = yield* FiberSet.makeRuntime<never>()
    const process = crypto.randomUUID()
    const tree: Tree = {
      key,
      redis,
      options,
      batcher: Batch.makeBatcher(redis, {
        tree: key,
        leaseMillis: options.leaseMillis,
        keepMillis: keepMillis(options),
        idKeepMillis: options.idTtlMillis,
        timeoutMillis: options.timeoutMillis
      }, fork, outage),
      fork,
      live: new Renewals(),
      nextId: idsOfProcess(),
      tickets: new Map(),
      called: new Set(),
      process,
      watching: new Map(),
      lost: new Map(),
      outage,
      open: new Map(),
      subscribers: new Subscribers(),
      drainer: options.sink === undefined ? undefined : makeDrainer(redis, key, process, options.sink, options.leaseMillis, options.timeoutMillis)
    }
    yield* Effect.addFinalizer(() => Effect.sync(() => tree.subscribers.end()))
    const root = yield* ensure(tree, [], settings)
    if (tree.drainer !== undefined) {
      const unregister = registerBacklog(
        yield* Effect.context<never>(),
        { tree: key, sink: options.sink!.name },
        tree.drainer.backlog
      )
      const drainer = tree.drainer
      yield* Effect.addFinalizer(() => Effect.andThen(drainer.tidy(true), Effect.sync(unregister)))
      yield* Effect.forkScoped(drainer.run)
      yield* Effect.forkScoped(HostTime.every(tidyEveryMillis, drainer.tidy(false)))
    }

    // One round trip renews every lease of this process, three times a lease.
    yield* Effect.forkScoped(HostTime.every(
      renewMillis(tree),
      Effect.suspend(() =>
        tree.live.size === 0 && tree.tickets.size === 0
          ? Effect.void
          : redis.eval(Scripts.renew)(tree.key, options.leaseMillis, keepMillis(options), tree.live.ids(), [
            ...tree.tickets.keys()
          ]).pipe(
            reportFailure(`Budget tree "${tree.key}": could not renew this process's leases; retried in a third of a lease`)
          )
      )
    ))

    // Tickets called by any process's script: wake the waiter holding one.
    const messages = yield* redis.subscribe(`${tree.key}:wake`)
    yield* Effect.forkScoped(Effect.forever(Effect.flatMap(Queue.take(messages), ({ message }) =>
      Effect.sync(() => {
        for (const ticket of message.split(" ")) callTicket(tree, ticket)
      }))))
    return yield* opened(tree, root, settings)
  })

/** The store of the budget at the head of `chain`, with its metrics if it asks for them. */
const opened = (tree: Tree, chain: ReadonlyArray<Level>, settings: Settings) =>
  Effect.gen(function*() {
    const store = storeOf(tree, chain)
    if (settings.metrics) {
      yield* watch(tree.watching, store.path, settings, store.snapshot, yield* Effect.context<never>(), tree.fork)
    }
    return store
  })

// A called ticket whose waiter is not waiting yet (its reply is on the way,
// or it is between attempts) is kept, a bounded number of them, for it to
// find.
const callTicket = (tree: Tree, ticket: string): void => {
  const wake = tree.tickets.get(ticket)
  if (wake !== undefined) return wake()
  tree.called.add(ticket)
  if (tree.called.size > 1_024) tree.called.delete(tree.called.values().next().value!)
}

/** Waits until the ticket is called, or `millis` pass. */
const turn = (tree: Tree, ticket: string, millis: number): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (tree.called.delete(ticket)) return resume(Effect.void)
    const done = () => {
      clearTimeout(timer)
      tree.tickets.set(ticket, undefined)
      resume(Effect.void)
    }
    const timer = setTimeout(done, millis)
    tree.tickets.set(ticket, done)
    return Effect.sync(() => {
      clearTimeout(timer)
      tree.tickets.set(ticket, undefined)
    })
  })

/** How often a drainer deletes the consumers of ended drainers. */
const tidyEveryMillis = 600_000

/** Leases and registrations are renewed three times a lease. */
const renewMillis = (tree: Tree) => Math.max(1, Math.floor(tree.options.leaseMillis / 3))

/**
 * Makes the budget at the head of `chain` in Redis, or sets its caps,
 * window and thresholds; true if it was made afresh (new, or lost), or
 * the place of a lost level. One lost is made only if `make`: not one
 * this process has open, which is not new.
 */
const ensureLevel = (
  tree: Tree,
  chain: ReadonlyArray<Level>,
  make: boolean
): Effect.Effect<boolean | Scripts.Lost, BudgetUnavailable> =>
  Effect.gen(function*() {
    const { path, settings } = chain[0]!
    const window = settings.window
    const answer = yield* reach(
      tree,
      path,
      tree.redis.eval(Scripts.ensure)(
        chain.map((level) => level.key),
        tree.key,
        capArg(settings.tokenCap),
        capArg(settings.nanoCap),
        settings.thresholds.join(","),
        window === undefined ? 0 : Cron.isCron(window) ? -1 : window,
        window === undefined ? "" : Cron.isCron(window) ? `cron ${JSON.stringify(window)}` : `every ${window}`,
        make,
        rateArg(settings.rates),
        settings.maxConcurrent === Infinity ? -1 : settings.maxConcurrent,
        tree.options.sink?.maxBacklog ?? -1,
        tree.options.totals === undefined ? 0 : rebuildMillis(tree),
        Cron.isCron(window) ? cronEnds(window) : []
      )
    )
    if (answer === "m" && tree.options.totals !== undefined) yield* restore(tree, chain[0]!, tree.options.totals)
    if (answer === 0 || answer === "m") return answer === "m"
    if (Scripts.isLost(answer)) return answer
    const [tokenCap, nanoCap, rate, maxConcurrent] = answer
    yield* warnLimitsChanged(path, {
      tokenCap: capOf(tokenCap),
      nanoCap: capOf(nanoCap),
      rates: ratesOf(rate),
      maxConcurrent: capOf(maxConcurrent)
    }, settings)
    return false
  })

/** Entries of an outbox a rebuild reads in one script. */
const scanCount = 1_000

/**
 * How long a rebuild may take before another process makes the budget
 * again: a lease, or three round trips' timeouts (its outbox's chunks and
 * its query) if longer.
 */
const rebuildMillis = (tree: Tree) => Math.max(tree.options.leaseMillis, 3 * tree.options.timeoutMillis)

/**
 * Rebuilds `level`, just made again (onStateLost "restore"), from the
 * ledger: what its entries made before then, since its current window
 * began or it was last reset, sum to; those still in the tree's outbox
 * counted from there, the others from `totals` (which leaves the
 * outbox's out, so an entry drained meanwhile is counted once). Until it
 * is done the level refuses records and reserves as lost (commits charge
 * it: their entries come after); a rebuild that fails is made again by
 * the next operation after `rebuildMillis`.
 */
const restore = (tree: Tree, level: Level, totals: Totals["Service"]): Effect.Effect<void, BudgetUnavailable> =>
  Effect.gen(function*() {
    let made = 0
    let reset = 0
    let after = "-"
    let tokens = 0
    let nanos = 0
    const inOutbox: Array<readonly [id: string, at: number, tokens: number, nanos: number]> = []
    do {
      const scanned = yield* reach(
        tree,
        level.path,
        tree.redis.eval(Scripts.restoreScan)(
          level.key,
          `${tree.key}:ledger`,
          tree.key,
          after,
          scanCount,
          made === 0 ? "" : String(made)
        )
      )
      // Made again by another process since: its rebuild, not this one.
      if (scanned[0] !== "ok") return
      made = Number(scanned[1])
      reset = Number(scanned[2])
      after = scanned[3]!
      for (let at = 4; at + 3 < scanned.length; at += 4) {
        inOutbox.push([scanned[at]!, Number(scanned[at + 1]), Number(scanned[at + 2]), Number(scanned[at + 3])])
      }
    } while (after !== "")
    const window = level.settings.window
    const windowStart = window === undefined ? 0 : typeof window === "number"
      ? Math.floor(made / window) * window
      // the window that holds `made`: one that begins at `made` exactly included
      : Cron.prev(window, made + 1).getTime()
    const from = Math.max(windowStart, reset)
    for (const [, at, entryTokens, entryNanos] of inOutbox) {
      if (at < from) continue
      tokens += entryTokens
      nanos += entryNanos
    }
    const spent = yield* deadline(
      totals.spent({ budget: level.path, from, to: made, excluding: inOutbox.map(([id]) => id) }),
      tree.options.timeoutMillis,
      () => new LedgerUnavailable({ sink: "Ledger.Totals", cause: new Error(`no answer within ${tree.options.timeoutMillis} ms`) })
    ).pipe(Effect.mapError((cause) => new BudgetUnavailable({ budget: level.path, cause })))
    yield* reach(tree, level.path, tree.redis.eval(Scripts.restore)(level.key, String(made), tokens + spent.tokens, nanos + spent.nanos))
  })

/**
 * Makes again the first `levels` budgets of `chain` (its head and those
 * above it, up to a lost one), the highest first, each with the options
 * this process opened it with; true if any was made afresh.
 */
const remake = (tree: Tree, chain: ReadonlyArray<Level>) => (levels: number): Effect.Effect<boolean, BudgetUnavailable> =>
  Effect.gen(function*() {
    let made = false
    for (let i = levels - 1; i >= 0; i--) {
      let answer = yield* ensureLevel(tree, chain.slice(i), true)
      // Being rebuilt from the ledger by another process: awaited (it
      // takes a query), for a lease at most; then it is made again here.
      const until = Date.now() + rebuildMillis(tree)
      for (let pause = 10; typeof answer !== "boolean" && answer[1] === "1" && Date.now() < until; pause *= 2) {
        if (tree.options.totals === undefined) break
        yield* HostTime.sleep(Math.min(pause, 200))
        answer = yield* ensureLevel(tree, chain.slice(i), true)
      }
      // A level above lost meanwhile: left to the next operation to find.
      if (typeof answer !== "boolean") return made
      made ||= answer
    }
    return made
  })

/**
 * Opens the budget of `settings` under `parent` (none: the root), making it
 * if it is not there, for as long as the scope lasts. One this process has
 * open already that is not there was lost, and is not made silently.
 */
const ensure = (tree: Tree, parent: ReadonlyArray<Level>, settings: Settings) =>
  Effect.gen(function*() {
    const path = parent.length === 0 ? settings.name : `${parent[0]!.path}/${settings.name}`
    const chain: ReadonlyArray<Level> = [
      { path, key: `${tree.key}:n:${path}`, settings, unavailable: unavailable(path) },
      ...parent
    ]
    const answer = yield* ensureLevel(tree, chain, !tree.open.has(path))
    if (typeof answer !== "boolean") {
      // It, or a level above, is lost: remade, or refused.
      yield* onLost(tree, chain.map((level) => level.path), answer[1], remake(tree, chain), Effect.void)
    }
    tree.open.set(path, (tree.open.get(path) ?? 0) + 1)
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        const users = tree.open.get(path)! - 1
        if (users === 0) tree.open.delete(path)
        else tree.open.set(path, users)
      })
    )
    const window = settings.window
    if (Cron.isCron(window)) yield* Effect.forkScoped(extendEnds(tree, chain.map((level) => level.key), window, cronEnds(window)))
    return chain
  })

const storeOf = (tree: Tree, chain: ReadonlyArray<Level>): StoreBudget => {
  const { path } = chain[0]!
  const keys = chain.map((level) => level.key)
  const paths = chain.map((level) => level.path)
  const redis = tree.redis
  const lease = tree.options.leaseMillis
  const call = <A>(script: Effect.Effect<A, Redis.RedisError>) => reach(tree, path, script)
  const whenLost = <A, E>(place: string, retry: Effect.Effect<A, E | BudgetUnavailable> | undefined) =>
    onLost(tree, paths, place, remake(tree, chain), retry)

  // Renewed from before the request: a reply lost on the way still leaves a
  // hold that a later release can find, or that expires. Not renewed after a
  // failed or interrupted request: a hold it made anyway expires.
  const holding = <A>(id: string, request: Effect.Effect<A, BudgetUnavailable>) =>
    Effect.suspend(() => {
      tree.live.add(id)
      return Effect.onExit(request, (exit) => Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => tree.live.remove(id)))
    })

  // `firstTry`: an operation that finds its budget lost may run once more
  // after the store made it again (onStateLost: "recreate"). One answered
  // "again" is sent again: expired holds were left to give back.
  const record = (
    tokens: number,
    nanos: number,
    id: string | undefined,
    labels: string,
    firstTry = true
  ): Effect.Effect<void, BudgetExceeded | BudgetUnavailable> =>
    Effect.flatMap(send(tree, chain[0]!, { _tag: "Record", chain: keys, tokens, nanos, labels, id }), (result) => {
      if (result[0] === "ok") {
        tree.drainer?.wake()
        return Effect.void
      }
      if (result[0] === "a") return record(tokens, nanos, id, labels, firstTry)
      if (result[0] === "l") return whenLost(result[1], firstTry ? record(tokens, nanos, id, labels, false) : undefined)
      if (result[0] === "b") return Effect.fail(backlogged(tree, path, result))
      return Effect.fail(exceeded(tree, chain, result, tokens, nanos))
    })

  /**
   * The hold a reserve got: a new one (`ok`), or, for an idempotency key,
   * the one already under it, held or committed.
   */
  const holdOf = (
    id: string,
    tokens: number,
    nanos: number,
    labels: Labels | undefined,
    result: readonly ["ok"] | Scripts.Kept
  ): RedisHold => {
    if (result[0] === "ok") return new RedisHold(tree, chain, keys, paths, id, tokens, nanos, labels)
    if (result[0] === "h") return new RedisHold(tree, chain, keys, paths, id, Number(result[1]), Number(result[2]), labels)
    tree.live.remove(id)
    return new RedisHold(tree, chain, keys, paths, id, tokens, nanos, labels, settlementOf(result))
  }

  const reserveNow = (
    tokens: number,
    nanos: number,
    key: string | undefined,
    labels: Labels | undefined,
    firstTry = true
  ): Effect.Effect<RedisHold, BudgetExceeded | BudgetUnavailable> =>
    Effect.suspend(() => {
      const id = key === undefined ? tree.nextId() : holdIdOf(key)
      const operation = { _tag: "Reserve", chain: keys, id, tokens, nanos, labels: labelsText(labels), once: key !== undefined } as const
      return Effect.flatMap(holding(id, send(tree, chain[0]!, operation)), (result) => {
        if (result[0] === "ok" || result[0] === "h" || result[0] === "c") return Effect.succeed(holdOf(id, tokens, nanos, labels, result))
        tree.live.remove(id)
        if (result[0] === "a") return reserveNow(tokens, nanos, key, labels, firstTry)
        if (result[0] === "l") return whenLost(result[1], firstTry ? reserveNow(tokens, nanos, key, labels, false) : undefined)
        if (result[0] === "b") return Effect.fail(backlogged(tree, path, result))
        return Effect.fail(exceeded(tree, chain, result, tokens, nanos))
      })
    })

  // Each attempt is one script: it takes the hold, or hands back a ticket in
  // the tree's lines, first come first served across every process. The
  // waiter then sleeps until a script calls its ticket, or the script's
  // fallback time passes (a lost message, a window's end).
  // A waiter gives up promptly (interrupted, timed out), even with a round
  // trip in flight: what that round trip may have done is undone after it,
  // in the background. Its ticket leaves the line (the ticket's id is made
  // here, so `leave` finds it even if the attempt that lined it up had no
  // reply), and a hold it may have taken is released (one under an
  // idempotency key, which another call may share, lapses with its lease).
  const reserveWaiting = (tokens: number, nanos: number, key: string | undefined, labels: Labels | undefined) =>
    Effect.suspend(() => {
      const id = key === undefined ? tree.nextId() : holdIdOf(key)
      const ticket = tree.nextId()
      /** The ticket may be in a line: an attempt was sent that has not said otherwise. */
      let lined = false
      /** A hold may have been taken that no reply has told of. */
      let unanswered = false
      let firstTry = true
      const settled = () => {
        lined = false
        tree.tickets.delete(ticket)
      }
      const attempt: Effect.Effect<RedisHold, BudgetExceeded | BudgetUnavailable> = Effect.suspend(() => {
        lined = true
        unanswered = true
        return Effect.flatMap(
          holding(
            id,
            Effect.interruptible(call(
              redis.eval(Scripts.reserveWaiting)(keys, tree.key, tokens, nanos, id, lease, ticket, labelsText(labels))
            ))
          ),
          (result) => {
            unanswered = false
            if (result[0] === "ok" || result[0] === "h" || result[0] === "c") {
              settled()
              return Effect.succeed(holdOf(id, tokens, nanos, labels, result))
            }
            tree.live.remove(id)
            if (result[0] === "l") {
              // The script left the line: a budget made again is waited on afresh.
              settled()
              const retry = firstTry ? attempt : undefined
              firstTry = false
              return whenLost(result[1], retry)
            }
            if (result[0] === "x") {
              settled()
              return Effect.fail(exceeded(tree, chain, result, tokens, nanos))
            }
            if (result[0] === "b") {
              settled()
              return Effect.fail(backlogged(tree, path, result))
            }
            // Gave up before this ran: no one waits for this answer.
            if (result[0] === "g") return Effect.interrupt
            if (!tree.tickets.has(ticket)) tree.tickets.set(ticket, undefined)
            return Effect.andThen(Effect.interruptible(turn(tree, ticket, result[2])), attempt)
          }
        )
      })
      // Sent at once, not awaited: the caller goes on now, and whatever it
      // sends next through this client reaches Redis after it.
      const undo = () => {
        if (!lined) return
        const release = unanswered && key === undefined ? id : ""
        settled()
        // Bounded by a lease, not the timeout: the ticket would lapse then
        // anyway, and a leave cut short (its script still loading, say)
        // would leave it in line until then.
        tree.fork(
          reach(tree, path, redis.eval(Scripts.leave)(keys, tree.key, ticket, release, keepMillis(tree.options)), lease).pipe(
            reportFailure(`Budget "${path}": a waiter that gave up could not leave its line; its ticket lapses with its lease`)
          )
        )
      }
      return Effect.onExit(attempt, (exit) => Exit.isSuccess(exit) ? Effect.void : Effect.sync(undo))
    })

  /**
   * A read of counters by `script`: run again while expired holds are left
   * to give back; a lost level handled as the store was told, and the read
   * run once more if it made the level again.
   */
  const look = <A>(
    script: Effect.Effect<ReadonlyArray<string> | Scripts.Lost | Scripts.Again, Redis.RedisError>,
    read: (answer: ReadonlyArray<string>) => A
  ): Effect.Effect<A, BudgetUnavailable> => {
    const once = (firstTry: boolean): Effect.Effect<A, BudgetUnavailable> =>
      Effect.flatMap(call(script), (answer) => {
        if (Scripts.isAgain(answer)) return once(firstTry)
        if (Scripts.isLost(answer)) return whenLost(answer[1], firstTry ? once(false) : undefined)
        return Effect.succeed(read(answer))
      })
    return Effect.suspend(() => once(true))
  }

  const snapshot = look(redis.eval(Scripts.snapshot)(keys, tree.key), (answer) => {
    const counters = countersOf(answer, 0)
    observed(tree.watching, path, counters)
    return counters
  })

  const children = look(redis.eval(Scripts.children)(keys, tree.key), (answer) => {
    const listed: Array<readonly [string, Counters]> = []
    for (let at = 0; at < answer.length; at += 1 + countersLength) {
      listed.push([answer[at]!, countersOf(answer, at + 1)])
    }
    return listed
  })

  // Reset is how a lost budget is made again on purpose: its lost levels
  // are made (with nothing used), then it is reset.
  const resetOnce = (firstTry: boolean): Effect.Effect<void, BudgetUnavailable> =>
    Effect.flatMap(call(redis.eval(Scripts.reset)(keys, tree.key)), (answer) => {
      if (answer === 0) return Effect.void
      // Lost again between its remaking and the reset: said, and refused.
      if (!firstTry) return onLost(tree, paths, answer[1], remake(tree, chain), undefined)
      return remakeThen(tree, paths, answer[1], remake(tree, chain), resetOnce(false))
    })
  const reset = Effect.suspend(() => resetOnce(true))

  return {
    path,
    record: (tokens, nanos, id, labels) => record(tokens, nanos, id, labelsText(labels)),
    reserve: (tokens, nanos, wait, id, labels) =>
      wait ? reserveWaiting(tokens, nanos, id, labels) : reserveNow(tokens, nanos, id, labels),
    snapshot,
    children,
    reset,
    child: (settings) => Effect.flatMap(ensure(tree, chain, settings), (childChain) => opened(tree, childChain, settings)),
    get events() {
      return events(tree, chain[chain.length - 1]!, path, renewMillis(tree), () => count(tree.watching, [path], "eventsDropped"))
    }
  }
}
