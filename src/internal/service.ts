import { Context, Effect, References, Scope, Tracer } from "effect"
import { Budget, type ChargeOptions, type ReserveOptions } from "../Budget.ts"
import type { BudgetService } from "../Budget.ts"
import type { BudgetExceeded, BudgetUnavailable } from "../BudgetError.ts"
import { InvalidUsage } from "../BudgetError.ts"
import type { StoreBudget } from "../BudgetStore.ts"
import { usageError, usdToNanos } from "../Usage.ts"
import type { Usage } from "../Usage.ts"
import { labelsOf } from "./labels.ts"
import { storable, unstorableReason } from "./text.ts"
import { settingsOf } from "./options.ts"
import type { Hold } from "./reservation.ts"
import { snapshotOf } from "./snapshot.ts"

/*
 * The `Budget` service over one budget of any store. Everything every store
 * must do alike lives here, once: validating amounts and options, dollars
 * to nano-dollars, reservations' scopes, spans; a store's holds extend
 * `Hold` (reservation.ts), which validates commits. A store only checks
 * limits and applies changes.
 */

const close = (hold: Hold) => hold.close

/** The most characters an idempotency key may have. */
const maxIdLength = 256

/**
 * An idempotency key as a store keeps it, or why it cannot be one: the
 * caller's, scoped to the budget (its path's length first, so no other
 * path and id read the same), since one id on two budgets names two
 * charges.
 */
const idOf = (path: string, options: ChargeOptions | undefined): string | undefined | InvalidUsage => {
  const id = options?.id
  if (id === undefined) return undefined
  if (typeof id !== "string" || id.length === 0 || id.length > maxIdLength) {
    return new InvalidUsage({ field: "id", value: id, reason: `must be a string of 1 to ${maxIdLength} characters` })
  }
  if (!storable(id)) return new InvalidUsage({ field: "id", value: id, reason: unstorableReason })
  return `${path.length}:${path}:${id}`
}

export const serviceOf = (store: StoreBudget): BudgetService => {
  const acquire = (
    usage: Usage,
    options: ReserveOptions | undefined
  ): Effect.Effect<Hold, BudgetExceeded | InvalidUsage | BudgetUnavailable> => {
    const invalid = usageError(usage, "usage")
    if (invalid !== undefined) return Effect.fail(invalid)
    const id = idOf(store.path, options)
    if (id instanceof InvalidUsage) return Effect.fail(id)
    const labels = labelsOf(options?.labels)
    if (labels instanceof InvalidUsage) return Effect.fail(labels)
    const wait = options?.onExceeded === "wait"
    const tokens = usage.tokens ?? 0
    const nanos = usdToNanos(usage.usd ?? 0)
    const held = store.reserve(tokens, nanos, wait, id, labels)
    // A span only inside a traced operation: untraced code pays one check.
    return Effect.withFiber((fiber) =>
      Context.getOrUndefined(fiber.context, Tracer.ParentSpan) !== undefined && fiber.getRef(References.TracerEnabled)
        ? Effect.withSpan(held, "Budget.reserve", {
          attributes: {
            "budget.path": store.path,
            "budget.tokens": tokens,
            "budget.usd": usage.usd ?? 0,
            "budget.on_exceeded": wait ? "wait" : "fail"
          }
        })
        : held
    )
  }
  const path = store.path
  return Budget.of({
    name: path.slice(path.lastIndexOf("/") + 1),
    path,
    record: (usage, options) => {
      const invalid = usageError(usage, "usage")
      if (invalid !== undefined) return Effect.fail(invalid)
      const id = idOf(path, options)
      if (id instanceof InvalidUsage) return Effect.fail(id)
      const labels = labelsOf(options?.labels)
      if (labels instanceof InvalidUsage) return Effect.fail(labels)
      return store.record(usage.tokens ?? 0, usdToNanos(usage.usd ?? 0), id, labels)
    },
    // `Effect.acquireRelease`, less its `provideContext` around the release
    // (which a release that needs no service only pays for: +17% on the
    // scoped bench row, docs/design.md): the hold is taken and its release
    // registered in one uninterruptible region; the release is built when
    // the scope closes.
    reserve: (usage, options) =>
      Effect.uninterruptible(Effect.flatMap(Effect.scope, (scope) =>
        Effect.tap(acquire(usage, options), (hold) => Scope.addFinalizerExit(scope, () => hold.close)))),
    withReservation: (usage, use, options) => Effect.acquireUseRelease(acquire(usage, options), use, close),
    snapshot: Effect.map(store.snapshot, (counters) => snapshotOf(path, counters)),
    children: Effect.map(store.children, (children) =>
      children
        .map(([name, counters]) => snapshotOf(`${path}/${name}`, counters))
        .sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
    reset: store.reset,
    child: (name, options = {}) =>
      Effect.suspend(() => {
        const settings = settingsOf({ ...options, name }, name)
        if (settings instanceof InvalidUsage) return Effect.fail(settings)
        return Effect.map(store.child(settings), serviceOf)
      }),
    get events() {
      return store.events
    }
  })
}
