import { Effect } from "effect"
import type { Context, Scope } from "effect"
import type { BudgetUnavailable } from "../../BudgetError.ts"
import type { Counters } from "../../BudgetStore.ts"
import { registerMetrics } from "../metrics.ts"
import { reportFailure } from "../report.ts"
import type { Fork } from "./batch.ts"
import { snapshotOf } from "../snapshot.ts"

/*
 * The metrics of budgets kept in Redis, as this process reports them: the
 * same series as in memory (metrics.ts). Counters count what this process
 * did (an exporter per process, summed by the backend, gives the fleet's).
 * Gauges show the budget's last snapshot: a gauge is read synchronously and
 * cannot ask Redis, so a read that finds the snapshot older than a second
 * starts a new one in the background, and a budget nobody exports costs no
 * round trips. Every `snapshot` the caller takes refreshes them too. Their
 * age is wall-clock time, like Redis's: a `TestClock` does not age a
 * snapshot.
 */

/** What this process knows of one budget, for its metrics. */
export interface Watched {
  committed: number
  released: number
  exceeded: number
  lost: number
  eventsDropped: number
  counters: Counters | undefined
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
  kind: "committed" | "released" | "exceeded" | "lost" | "eventsDropped"
): void => {
  if (watching.size === 0) return
  for (let i = 0; i < paths.length; i++) {
    const watched = watching.get(paths[i]!)
    if (watched !== undefined) watched[kind]++
  }
}

/** Keeps a snapshot's counters for the gauges of its budget, if watched. */
export const observed = (watching: Watching, path: string, counters: Counters): void => {
  const watched = watching.get(path)
  if (watched === undefined) return
  watched.counters = counters
  watched.takenAt = Date.now()
}

/**
 * Registers the metrics of the budget at `path` for as long as the scope
 * lasts; a budget opened twice in one process registers once.
 */
export const watch = (
  watching: Watching,
  path: string,
  caps: Parameters<typeof registerMetrics>[1],
  snapshot: Effect.Effect<Counters, BudgetUnavailable>,
  context: Context.Context<never>,
  fork: Fork
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      let watched = watching.get(path)
      if (watched === undefined) {
        const created: Watched = {
          committed: 0,
          released: 0,
          exceeded: 0,
          lost: 0,
          eventsDropped: 0,
          counters: undefined,
          takenAt: 0,
          refreshing: false,
          users: 0,
          unregister: noop
        }
        const latest = () => {
          if (!created.refreshing && Date.now() - created.takenAt > staleAfterMillis) {
            created.refreshing = true
            fork(snapshot.pipe(
              reportFailure(`Budget "${path}": could not refresh its metrics' gauges; they show the last snapshot`),
              Effect.ensuring(Effect.sync(() => {
                created.refreshing = false
              }))
            ))
          }
          return created.counters === undefined ? undefined : snapshotOf(path, created.counters)
        }
        created.unregister = registerMetrics({ path, snapshot: latest, counts: created }, caps, context)
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
