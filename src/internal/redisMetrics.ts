import { Effect, Metric } from "effect"
import type { Context, Scope } from "effect"
import type { Snapshot } from "../Budget.ts"
import type { BudgetUnavailable } from "../BudgetError.ts"

/*
 * The metrics of budgets kept in Redis, as this process reports them: the
 * same series as in memory. Counters count what this process did (an
 * exporter per process, summed by the backend, gives the fleet's). Gauges
 * show the budget's last snapshot: a gauge is read synchronously and cannot
 * ask Redis, so a read that finds the snapshot older than a second starts a
 * new one in the background, and a budget nobody exports costs no round
 * trips. Every `snapshot` the caller takes refreshes them too. Their age is
 * wall-clock time, like Redis's: a `TestClock` does not age a snapshot.
 */

/** What this process knows of one budget, for its metrics. */
export interface Watched {
  committed: number
  released: number
  exceeded: number
  snapshot: Snapshot | undefined
  takenAt: number
  refreshing: boolean
  users: number
  unregister: () => void
}

/** Watched budgets of one tree in this process, by path. */
export type Watching = Map<string, Watched>

const staleAfterMillis = 1_000

const noop = () => {}

/** Counts an event of `kind` at each budget of `paths` that this process watches. */
export const count = (
  watching: Watching,
  paths: ReadonlyArray<string>,
  kind: "committed" | "released" | "exceeded"
): void => {
  if (watching.size === 0) return
  for (let i = 0; i < paths.length; i++) {
    const watched = watching.get(paths[i]!)
    if (watched !== undefined) watched[kind]++
  }
}

/** Keeps `snapshot`'s answer for the gauges of its budget, if watched. */
export const observed = (watching: Watching, snapshot: Snapshot): void => {
  const watched = watching.get(snapshot.path)
  if (watched === undefined) return
  watched.snapshot = snapshot
  watched.takenAt = Date.now()
}

/**
 * Registers the metrics of the budget at `path` for as long as the scope
 * lasts; a budget opened twice in one process registers once.
 */
export const watch = (
  watching: Watching,
  path: string,
  bounded: { readonly tokens: boolean; readonly usd: boolean },
  snapshot: Effect.Effect<Snapshot, BudgetUnavailable>,
  context: Context.Context<never>
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let watched = watching.get(path)
      if (watched === undefined) {
        const created: Watched = {
          committed: 0,
          released: 0,
          exceeded: 0,
          snapshot: undefined,
          takenAt: 0,
          refreshing: false,
          users: 0,
          unregister: noop
        }
        const refresh = Effect.runForkWith(context)
        const read = (value: (snapshot: Snapshot) => number) => () => {
          if (!created.refreshing && Date.now() - created.takenAt > staleAfterMillis) {
            created.refreshing = true
            refresh(snapshot.pipe(
              Effect.ignore,
              Effect.ensuring(Effect.sync(() => {
                created.refreshing = false
              }))
            ))
          }
          return { value: created.snapshot === undefined ? 0 : value(created.snapshot) }
        }
        created.unregister = register(path, bounded, created, read, context)
        watching.set(path, created)
        watched = created
      }
      watched.users++
      return watched
    }),
    (watched) =>
      Effect.sync(() => {
        if (--watched.users > 0) return
        watched.unregister()
        watching.delete(path)
      })
  )

const register = (
  path: string,
  bounded: { readonly tokens: boolean; readonly usd: boolean },
  watched: Watched,
  read: (value: (snapshot: Snapshot) => number) => () => { readonly value: number },
  context: Context.Context<never>
): () => void => {
  const attributes = { budget: path }
  // An unbounded axis has no remaining to report: Infinity is no number an
  // exporter can carry.
  const gauges: Array<readonly [string, (snapshot: Snapshot) => number]> = [
    ["budget_tokens_used", (s) => s.tokensUsed],
    ["budget_usd_used", (s) => s.usdUsed],
    ["budget_tokens_reserved", (s) => s.tokensReserved],
    ["budget_usd_reserved", (s) => s.usdReserved]
  ]
  if (bounded.tokens) gauges.push(["budget_tokens_remaining", (s) => s.tokensRemaining])
  if (bounded.usd) gauges.push(["budget_usd_remaining", (s) => s.usdRemaining])
  const counters: Array<readonly [string, () => number]> = [
    ["budget_committed_total", () => watched.committed],
    ["budget_released_total", () => watched.released],
    ["budget_exceeded_total", () => watched.exceeded]
  ]
  const registrations = [
    ...gauges.map(([name, value]) =>
      Metric.registerUnsafe(Metric.gauge(name, { attributes }), context, { get: read(value), update: noop, modify: noop })
    ),
    ...counters.map(([name, value]) =>
      Metric.registerUnsafe(Metric.counter(name, { attributes, incremental: true }), context, {
        get: () => ({ count: value(), incremental: true }),
        update: noop,
        modify: noop
      })
    )
  ]
  return () => {
    for (const registration of registrations) registration.remove()
  }
}
