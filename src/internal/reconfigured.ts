import { Effect } from "effect"
import type { Reconfigured } from "../BudgetEvent.ts"
import { usdFromNanos } from "../Usage.ts"

/** Caps in a store's units: tokens and nano-dollars, `Infinity` for none. */
interface Caps {
  readonly tokenCap: number
  readonly nanoCap: number
}

/** Whether opening a budget with `next` changes the caps it had. */
export const capsDiffer = (previous: Caps, next: Caps): boolean =>
  previous.tokenCap !== next.tokenCap || previous.nanoCap !== next.nanoCap

/** The event of a budget opened again with other caps. */
export const reconfigured = (budget: string, previous: Caps, next: Caps): Reconfigured => ({
  _tag: "Reconfigured",
  budget,
  tokenCap: next.tokenCap,
  usdCap: usdFromNanos(next.nanoCap),
  previousTokenCap: previous.tokenCap,
  previousUsdCap: usdFromNanos(previous.nanoCap)
})

const describe = (caps: Caps): string =>
  `tokenCap ${caps.tokenCap === Infinity ? "none" : caps.tokenCap} and usdCap ${
    caps.nanoCap === Infinity ? "none" : `$${usdFromNanos(caps.nanoCap)}`
  }`

/**
 * Never silent: a budget opened with other caps than it had takes them (the
 * caps given last apply, in every process), and the process that changed
 * them says so.
 */
export const warnCapsChanged = (budget: string, previous: Caps, next: Caps): Effect.Effect<void> =>
  Effect.logWarning(
    `Budget "${budget}" was opened with ${describe(next)} where it had ${describe(previous)}: ` +
      `the caps given last now apply, in every process that shares it. Open it with the same caps everywhere ` +
      `to keep them.`
  )
