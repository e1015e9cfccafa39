/**
 * The charges of the end-to-end ledger tests: one labelled charge of a
 * random kind (a record, a record retried with its idempotency key, a
 * hold committed under, over or at its estimate, a hold released), and
 * what it charged, as its ledger entries must sum to.
 */
import { Effect, Random } from "effect"
import type { BudgetService, Ledger, Settlement } from "../../src/index.ts"
import { usdFromNanos, usdToNanos } from "../../src/index.ts"

/** What charges charged, and how many ledger entries they made. */
export interface Charged {
  tokens: number
  nanos: number
  entries: number
}

export const nothingCharged = (): Charged => ({ tokens: 0, nanos: 0, entries: 0 })

const entryOf = (tokens: number, nanos: number): Charged => ({ tokens, nanos, entries: 1 })

const settled = (settlement: Settlement): Charged =>
  settlement._tag === "Committed"
    ? entryOf(settlement.tokens, usdToNanos(settlement.usd))
    : nothingCharged()

/**
 * One charge to one of `budgets`, labelled with `labels` (whose `request`,
 * unique to the charge, is the idempotency key of records that have one); a hold is
 * kept up to `holdMillis` before it is settled. Answers what it charged
 * once it is settled.
 */
export const chargeAtRandom = (
  budgets: ReadonlyArray<BudgetService>,
  labels: Ledger.Labels & { readonly request: string },
  holdMillis: number
) =>
  Effect.gen(function*() {
    const budget = budgets[yield* Random.nextIntBetween(0, budgets.length - 1)]!
    const kind = yield* Random.nextIntBetween(0, 99)
    const tokens = yield* Random.nextIntBetween(1, 50)
    const nanos = yield* Random.nextIntBetween(1, 50_000)
    const usage = { tokens, usd: usdFromNanos(nanos) }
    if (kind < 25) {
      yield* budget.record(usage, { labels })
      return entryOf(tokens, nanos)
    }
    if (kind < 40) {
      yield* budget.record(usage, { id: labels.request, labels })
      // delivered twice: charged once, one entry
      yield* budget.record(usage, { id: labels.request, labels })
      return entryOf(tokens, nanos)
    }
    return yield* Effect.scoped(Effect.gen(function*() {
      const hold = yield* budget.reserve(usage, { labels })
      yield* Effect.sleep(yield* Random.nextIntBetween(0, holdMillis))
      if (kind < 65) {
        // under the estimate
        const actual = {
          tokens: yield* Random.nextIntBetween(1, tokens),
          usd: usdFromNanos(yield* Random.nextIntBetween(1, nanos))
        }
        return settled(yield* hold.commit(actual))
      }
      if (kind < 80) {
        // over the estimate
        const actual = {
          tokens: yield* Random.nextIntBetween(tokens + 1, 2 * tokens),
          usd: usdFromNanos(yield* Random.nextIntBetween(nanos + 1, 2 * nanos))
        }
        return settled(yield* hold.commit(actual))
      }
      // the estimate itself
      if (kind < 90) return settled(yield* hold.commit())
      // given back: explicitly, or by the scope's close
      if (kind < 95) yield* hold.release
      return nothingCharged()
    }))
  })
