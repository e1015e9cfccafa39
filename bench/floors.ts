/**
 * Floors: the cheapest ways to do the same work with no budget at all. Every
 * check-and-add adds one request's tokens and nano-dollars to two counters
 * if both stay under their caps, as the memory store does.
 */
import { Effect, Ref, TxRef } from "effect"
import { usdToNanos } from "../src/index.ts"
import type { Case } from "./case.ts"
import { timeLoop, timeSync } from "./harness.ts"
import { estimate, ops } from "./workload.ts"

export const names = {
  plain: "floor: plain JS check-and-add",
  ref: "floor: Ref.modify check-and-add",
  refRaw: "Ref.modify check-and-add, no failure",
  scoped: "floor: empty scoped acquireRelease",
  bracket: "floor: empty acquireUseRelease",
  suspend: "Effect.suspend check-and-add",
  tx: "Effect.tx TxRef check-and-add"
} as const

// Caps no run can reach: the floors must take the success path every time.
const tokenCap = Number.MAX_SAFE_INTEGER
const nanoCap = Number.MAX_SAFE_INTEGER
const tokens = estimate.tokens
const nanos = usdToNanos(estimate.usd)

interface Counters {
  readonly tokens: number
  readonly nanos: number
}

// Immutable state, as a `Ref` or `TxRef` holds it: a new object per change.
const add = (state: Counters): [boolean, Counters] =>
  state.tokens + tokens <= tokenCap && state.nanos + nanos <= nanoCap
    ? [true, { tokens: state.tokens + tokens, nanos: state.nanos + nanos }]
    : [false, state]

// Shared, so the floor allocates no closure per op.
const refuseUnlessAdded = (added: boolean): Effect.Effect<void, string> => added ? Effect.void : Effect.fail("over")

export const floors: Effect.Effect<ReadonlyArray<Case>> = Effect.sync(() => {
  let tokensUsed = 0
  let nanosUsed = 0
  const checkAndAdd = (): boolean => {
    if (tokensUsed + tokens > tokenCap || nanosUsed + nanos > nanoCap) return false
    tokensUsed += tokens
    nanosUsed += nanos
    return true
  }
  const ref = Ref.makeUnsafe<Counters>({ tokens: 0, nanos: 0 })
  const txRef = TxRef.makeUnsafe<Counters>({ tokens: 0, nanos: 0 })

  return [
    {
      name: names.plain,
      // Not an effect, so a plain loop; it shows what the arithmetic costs.
      sample: Effect.sync(() => timeSync(ops.tiny, checkAndAdd))
    },
    // The Ref-based way to write `record`: a refusal must reach the caller
    // as a failure, as ours does, so the floor surfaces it too.
    {
      name: names.ref,
      sample: timeLoop(ops.tiny, () => Effect.flatMap(Ref.modify(ref, add), refuseUnlessAdded))
    },
    // The bare update, one runtime step, which no operation that can fail
    // matches with effect's public API (an empty `Effect.suspend` is two).
    {
      name: names.refRaw,
      sample: timeLoop(ops.tiny, () => Ref.modify(ref, add)),
      versus: { case: names.ref }
    },
    {
      name: names.suspend,
      sample: timeLoop(ops.tiny, () => Effect.suspend(() => checkAndAdd() ? Effect.void : Effect.fail("over"))),
      versus: { case: names.ref }
    },
    // For the design doc: what a transaction would cost the hot path.
    {
      name: names.tx,
      sample: timeLoop(ops.tiny, () => Effect.tx(TxRef.modify(txRef, add))),
      versus: { case: names.ref }
    },
    // Built per op, as our cases build theirs: the ratio is then what the
    // budget adds to the same expression with nothing to acquire or release.
    {
      name: names.scoped,
      sample: timeLoop(ops.small, () => Effect.scoped(Effect.acquireRelease(Effect.void, () => Effect.void)))
    },
    {
      name: names.bracket,
      sample: timeLoop(ops.small, () => Effect.acquireUseRelease(Effect.void, () => Effect.void, () => Effect.void))
    }
  ]
})
