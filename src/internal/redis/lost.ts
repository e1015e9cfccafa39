import { Effect, Schema } from "effect"
import type * as Redis from "effect/persistence/Redis"
import { BudgetStateLost, BudgetUnavailable } from "../../BudgetError.ts"
import { reportFailure } from "../report.ts"
import { Message } from "./events.ts"
import { count } from "./metrics.ts"
import type { Watching } from "./metrics.ts"

/*
 * A budget whose state Redis lost (a restart without persistence, an
 * eviction, a flush, a failover to a replica that missed writes): the
 * scripts refuse every operation on it (lua/levels.ts), and this side
 * says so and does what the store was told. It never goes on as if the
 * budget had no cap: `onStateLost: "fail"` refuses with
 * `BudgetUnavailable` until the budget is made again on purpose (`reset`),
 * `"recreate"` makes it again at once, with nothing used, and runs the
 * operation again.
 */

/** What a lost budget needs of its tree (the Redis store's `Tree`). */
export interface Losing {
  readonly key: string
  readonly redis: Redis.Redis["Service"]
  readonly options: { readonly onStateLost: "fail" | "recreate" | "restore" }
  readonly watching: Watching
  /** When this process last said a budget was lost, by path (host time, ms). */
  readonly lost: Map<string, number>
}

/** A process says a budget is lost at most this often while it stays lost. */
const sayEveryMillis = 60_000

/**
 * Says that the budget at `path` is lost, or was made again: an error log
 * and a `StateLost` event for every process listening, at most once a
 * minute while it stays lost.
 */
export const say = (tree: Losing, path: string, recreated: boolean): Effect.Effect<void> =>
  Effect.suspend(() => {
    const now = Date.now()
    const last = tree.lost.get(path)
    if (recreated) tree.lost.delete(path)
    else if (last !== undefined && now - last < sayEveryMillis) return Effect.void
    else tree.lost.set(path, now)
    const lost = new BudgetStateLost({ budget: path })
    const event = Schema.encodeSync(Message)({ _tag: "StateLost", budget: path, recreated })
    return Effect.logError(
      recreated
        ? tree.options.onStateLost === "restore"
          ? `Budget "${path}": its state was gone from Redis; made again with what the ledger says it spent in its window (onStateLost: "restore")`
          : `Budget "${path}": its state was gone from Redis; made again with nothing used (onStateLost: "recreate")`
        : `Budget "${path}": ${lost.message}`
    ).pipe(
      Effect.andThen(tree.redis.send("PUBLISH", `${tree.key}:events`, event)),
      reportFailure(`Budget "${path}": could not announce that its state was lost`)
    )
  })

/**
 * An operation on the budget at `paths[0]` found the level `paths[place - 1]`
 * lost. It is counted, and said; then, as the store was told, it fails,
 * or `remake` makes the levels from that one down again (true if it made
 * one: of many that find a budget lost, one does) and `retry` runs (once:
 * `retry` is undefined for an operation run again; see `remakeThen`).
 */
export const onLost = <A, E>(
  tree: Losing,
  paths: ReadonlyArray<string>,
  place: string,
  remake: (levels: number) => Effect.Effect<boolean, BudgetUnavailable>,
  retry: Effect.Effect<A, E | BudgetUnavailable> | undefined
): Effect.Effect<A, E | BudgetUnavailable> =>
  Effect.suspend(() => {
    const levels = Number(place)
    const lostPath = paths[levels - 1]!
    count(tree.watching, [paths[0]!], "lost")
    if (tree.options.onStateLost === "fail" || retry === undefined) {
      return Effect.andThen(
        say(tree, lostPath, false),
        Effect.fail(new BudgetUnavailable({ budget: paths[0]!, cause: new BudgetStateLost({ budget: lostPath }) }))
      )
    }
    return remakeThen(tree, paths, place, remake, retry)
  })

/**
 * Makes the levels of `paths` from the lost one at `place` down again (what
 * `onStateLost: "recreate"` and `reset` do), says so if this call made one,
 * then runs `then`.
 */
export const remakeThen = <A, E>(
  tree: Losing,
  paths: ReadonlyArray<string>,
  place: string,
  remake: (levels: number) => Effect.Effect<boolean, BudgetUnavailable>,
  then: Effect.Effect<A, E | BudgetUnavailable>
): Effect.Effect<A, E | BudgetUnavailable> =>
  remake(Number(place)).pipe(
    Effect.andThen((made) => made ? say(tree, paths[Number(place) - 1]!, true) : Effect.void),
    Effect.andThen(then)
  )
