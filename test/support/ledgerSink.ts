import { Effect } from "effect"
import { Ledger, LedgerUnavailable } from "../../src/index.ts"

/**
 * A sink for tests: keeps entries by id, counts an id handed over twice,
 * and refuses batches while `down`.
 */
export const collectingSink = (options: Ledger.SinkOptions = {}) =>
  Effect.gen(function*() {
    const state = {
      written: new Map<string, Ledger.Entry>(),
      /** Entries handed over again after they were written (a batch retried): idempotent, so kept once. */
      again: 0,
      batches: 0,
      down: false
    }
    const sink = yield* Ledger.makeSink(
      "test",
      (entries) =>
        Effect.suspend(() => {
          if (state.down) {
            return Effect.fail(new LedgerUnavailable({ sink: "test", cause: new Error("the test's sink is down") }))
          }
          state.batches++
          for (const entry of entries) {
            if (state.written.has(entry.id)) state.again++
            else state.written.set(entry.id, entry)
          }
          return Effect.void
        }),
      options
    )
    const sums = () => {
      let tokens = 0
      let nanos = 0
      for (const entry of state.written.values()) {
        tokens += entry.tokens
        nanos += entry.nanos
      }
      return { tokens, nanos }
    }
    return { sink, state, sums }
  })
