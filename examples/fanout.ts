/**
 * A fan-out of simulated LLM calls sharing one budget (no network).
 *
 * Every call holds an estimate before it starts, then commits what it really
 * used; a call that fails gives its hold back; a call that does not fit is
 * refused and skipped. The budget runs out part-way, and the report at the
 * end checks that nothing went past a cap and that no hold leaked.
 *
 * The latencies are simulated time, on effect's `TestClock`, paced to the
 * wall clock so the progress can be watched: a seed fixes the calls and the
 * order in which they finish, so a run prints the same every time.
 *
 *   npm start                     # a random run; the header prints its seed
 *   npm start -- --seed=42        # that run again, line for line
 *
 * Tests can import `run` and call it with `paced: false`: no real time.
 */
import { Clock, Console, Effect, Fiber, Random, Ref, Schema } from "effect"
import { TestClock } from "effect/testing"
import { realpathSync } from "node:fs"
import { pathToFileURL } from "node:url"
import { Budget, BudgetExceeded, usdToNanos } from "../src/index.ts"
import type { Axis, Snapshot, Usage } from "../src/index.ts"

// --- options ----------------------------------------------------------------

export interface FanoutOptions {
  readonly calls: number
  readonly concurrency: number
  readonly tokenCap: number
  readonly usdCap: number
  /** Multiplies every simulated latency. */
  readonly latencyScale: number
  /**
   * Moves the simulated clock with the wall clock, so the progress shows as
   * it happens; off, the run takes no real time. The outcome is the same.
   */
  readonly paced: boolean
  /** Share of calls that fail upstream (after their latency). */
  readonly failureRate: number
  /** Same seed, same calls (sizes, latencies, failures). Left out, one is drawn and printed. */
  readonly seed?: string | number | undefined
  /** Milliseconds between progress lines, before `latencyScale`. */
  readonly progressEveryMs: number
  /** No console output; the report is still returned. */
  readonly quiet: boolean
}

export const defaults: FanoutOptions = {
  calls: 300,
  concurrency: 16,
  tokenCap: 200_000,
  usdCap: 2,
  latencyScale: 1,
  paced: true,
  failureRate: 0.05,
  seed: undefined,
  progressEveryMs: 1000,
  quiet: false
}

// A made-up model: dollars per token, and the completion limit we ask for.
const inputUsdPerToken = 4 / 1_000_000
const outputUsdPerToken = 22 / 1_000_000
const maxOutputTokens = 700

const price = (input: number, output: number): Usage => ({
  tokens: input + output,
  usd: input * inputUsdPerToken + output * outputUsdPerToken
})

// --- the simulated calls ----------------------------------------------------

/** One call, decided up front so a seed fixes the whole script. */
interface PlannedCall {
  readonly id: number
  /** What the provider will bill for the prompt. */
  readonly promptTokens: number
  /** Our local count of the prompt: close, usually a little high. */
  readonly promptEstimate: number
  readonly outputTokens: number
  readonly latencyMs: number
  readonly fails: boolean
}

class UpstreamError extends Schema.TaggedError<UpstreamError>()("UpstreamError", {
  call: Schema.Number,
  status: Schema.Number
}) {}

const planCall = Effect.fn("planCall")(function*(id: number, failureRate: number) {
  const promptTokens = yield* Random.nextIntBetween(150, 1200)
  // A local tokenizer is off by a few percent, mostly on the safe side.
  const promptEstimate = Math.round(promptTokens * (1 + (yield* Random.nextBetween(-0.04, 0.12))))
  // One answer in ten runs into the limit; the rest are shorter.
  const truncated = (yield* Random.next) < 0.1
  const outputTokens = truncated ? maxOutputTokens : yield* Random.nextIntBetween(60, 500)
  // Time to first token, then streaming: latency grows with the answer.
  const latencyMs = (yield* Random.nextIntBetween(80, 300)) + outputTokens
  const fails = (yield* Random.next) < failureRate
  return { id, promptTokens, promptEstimate, outputTokens, latencyMs, fails } satisfies PlannedCall
})

// Our estimate: the prompt as we count it plus the most the answer can be.
const estimateOf = (call: PlannedCall): Usage => price(call.promptEstimate, maxOutputTokens)

const simulateLlm = Effect.fn("simulateLlm")(function*(call: PlannedCall, latencyScale: number) {
  yield* Effect.sleep(call.latencyMs * latencyScale)
  if (call.fails) return yield* new UpstreamError({ call: call.id, status: 503 })
  return price(call.promptTokens, call.outputTokens)
})

// --- bookkeeping ------------------------------------------------------------

interface Tally {
  readonly completed: number
  readonly refused: Readonly<Record<Axis, number>>
  readonly failed: number
  /** Calls whose actual usage beat their estimate. */
  readonly overEstimate: number
  /** Sums of what commits charged, to cross-check the budget's counters. */
  readonly tokensCharged: number
  readonly nanosCharged: number
  /** Overage reported by settlements: how far past a cap the budget may be. */
  readonly overageCommits: number
  readonly tokensOverage: number
  readonly nanosOverage: number
  /**
   * Excess declared by commits still in progress. A commit and our tally of
   * its overage are two steps, and another fiber can take a snapshot between
   * them, so a commit that may go over declares its excess first.
   */
  readonly tokensPending: number
  readonly nanosPending: number
  /** Largest used + reserved seen in any snapshot. */
  readonly peakTokens: number
  readonly peakNanos: number
  readonly samples: number
  readonly violations: ReadonlyArray<string>
}

const emptyTally: Tally = {
  completed: 0,
  refused: { tokens: 0, usd: 0 },
  failed: 0,
  overEstimate: 0,
  tokensCharged: 0,
  nanosCharged: 0,
  overageCommits: 0,
  tokensOverage: 0,
  nanosOverage: 0,
  tokensPending: 0,
  nanosPending: 0,
  peakTokens: 0,
  peakNanos: 0,
  samples: 0,
  violations: []
}

// Money is compared in whole nano-dollars: float dollars would drift.
const inFlightNanos = (s: Snapshot) => usdToNanos(s.usdUsed) + usdToNanos(s.usdReserved)

/** Checks one snapshot against the caps plus the overage allowed so far. */
const checkSample = (t: Tally, s: Snapshot, label: string): Tally => {
  const tokens = s.tokensUsed + s.tokensReserved
  const nanos = inFlightNanos(s)
  const violations = [...t.violations]
  if (tokens > s.tokenCap + t.tokensOverage + t.tokensPending) {
    violations.push(`${label}: ${fmtTokens(tokens)} tokens used+held, cap ${fmtTokens(s.tokenCap)}`)
  }
  if (nanos > usdToNanos(s.usdCap) + t.nanosOverage + t.nanosPending) {
    violations.push(`${label}: ${fmtUsd(nanos / 1e9)} used+held, cap ${fmtUsd(s.usdCap)}`)
  }
  return {
    ...t,
    peakTokens: Math.max(t.peakTokens, tokens),
    peakNanos: Math.max(t.peakNanos, nanos),
    samples: t.samples + 1,
    violations
  }
}

// --- formatting -------------------------------------------------------------

const fmtTokens = (n: number) => n.toLocaleString("en-US")
const fmtUsd = (usd: number) => `$${usd.toFixed(4)}`
const pct = (part: number, whole: number) => `${(100 * part / whole).toFixed(1)}%`
const callsText = (n: number) => n === 1 ? "1 call" : `${n} calls`
const fmtSecs = (ms: number) => `${(ms / 1000).toFixed(1)}s`

// Progress is a table: one row per tick, figures straight from `budget.snapshot`.
const progressHeader = (calls: number) =>
  `  time  done/${calls}    ok  refused  failed | tokens used    held     left |  usd used     held     left`

const progressRow = (elapsedMs: number, t: Tally, s: Snapshot) => {
  const refused = t.refused.tokens + t.refused.usd
  const done = t.completed + refused + t.failed
  const usd = (n: number) => n.toFixed(4).padStart(7)
  return `${fmtSecs(elapsedMs).padStart(6)}  ${String(done).padStart(8)}  ${String(t.completed).padStart(4)}` +
    `  ${String(refused).padStart(7)}  ${String(t.failed).padStart(6)} |` +
    ` ${fmtTokens(s.tokensUsed).padStart(11)}  ${fmtTokens(s.tokensReserved).padStart(6)}  ` +
    `${fmtTokens(s.tokensRemaining).padStart(7)} |  ${usd(s.usdUsed).padStart(8)}  ${usd(s.usdReserved)}  ${usd(s.usdRemaining)}`
}

// --- the fan-out ------------------------------------------------------------

export interface FanoutReport {
  readonly calls: number
  readonly completed: number
  readonly refused: Readonly<Record<Axis, number>>
  readonly failed: number
  readonly overEstimate: number
  readonly overageCommits: number
  readonly tokensOverage: number
  readonly usdOverage: number
  readonly peakTokens: number
  readonly peakUsd: number
  readonly samples: number
  readonly elapsedMs: number
  readonly final: Snapshot
  /** Every broken invariant; empty when the run is sound. */
  readonly problems: ReadonlyArray<string>
  readonly ok: boolean
}

/** Runs the fan-out against the `Budget` in context. */
export const fanout = Effect.fn("fanout")(function*(options: FanoutOptions) {
  const budget = yield* Budget
  const tally = yield* Ref.make(emptyTally)
  const say = (line: string) => options.quiet ? Effect.void : Console.log(line)

  // Snapshot first, then read the tally: a commit landing in between can
  // only raise the allowance, never make a sound state look broken.
  const sample = Effect.fnUntraced(function*(label: string) {
    const snapshot = yield* budget.snapshot
    const checked = yield* Ref.updateAndGet(tally, (t) => checkSample(t, snapshot, label))
    return { snapshot, tally: checked }
  })

  // Plan sequentially, so a seed gives the same script however fibers interleave.
  const plan = yield* Effect.forEach(
    Array.from({ length: options.calls }, (_, i) => i + 1),
    (id) => planCall(id, options.failureRate)
  )

  const callOne = Effect.fn("callOne")(
    function*(call: PlannedCall) {
      const estimate = estimateOf(call)
      // The scope owns the hold: it is released however the call ends,
      // unless a commit settled it first.
      yield* Effect.scoped(Effect.gen(function*() {
        const hold = yield* budget.reserve(estimate)
        yield* sample(`after reserving for call ${call.id}`)
        const actual = yield* simulateLlm(call, options.latencyScale)
        const excessTokens = Math.max(0, (actual.tokens ?? 0) - hold.tokens)
        const excessNanos = Math.max(0, usdToNanos(actual.usd ?? 0) - usdToNanos(hold.usd))
        const over = excessTokens > 0 || excessNanos > 0
        if (over) {
          yield* Ref.update(tally, (t) => ({
            ...t,
            tokensPending: t.tokensPending + excessTokens,
            nanosPending: t.nanosPending + excessNanos
          }))
        }
        const settled = yield* hold.commit(actual)
        const tokensOverage = settled.tokensOverage
        const nanosOverage = usdToNanos(settled.usdOverage)
        // One update: the reported overage replaces the declared excess.
        yield* Ref.update(tally, (t) => ({
          ...t,
          completed: t.completed + 1,
          overEstimate: t.overEstimate + (over ? 1 : 0),
          tokensCharged: t.tokensCharged + settled.tokens,
          nanosCharged: t.nanosCharged + usdToNanos(settled.usd),
          overageCommits: t.overageCommits + (tokensOverage > 0 || nanosOverage > 0 ? 1 : 0),
          tokensOverage: t.tokensOverage + tokensOverage,
          nanosOverage: t.nanosOverage + nanosOverage,
          tokensPending: t.tokensPending - excessTokens,
          nanosPending: t.nanosPending - excessNanos
        }))
      }))
      yield* sample(`after call ${call.id} committed`)
    },
    // Refusals and upstream failures are outcomes to count, not to stop on.
    Effect.catchTag("BudgetExceeded", (e: BudgetExceeded) =>
      // The demo's budget has caps, no rate: a refusal is on tokens or dollars.
      Ref.update(tally, (t) => {
        const axis = e.axis === "usd" ? "usd" : "tokens"
        return { ...t, refused: { ...t.refused, [axis]: t.refused[axis] + 1 } }
      })),
    Effect.catchTag("UpstreamError", (e: UpstreamError) =>
      Effect.andThen(Ref.update(tally, (t) => ({ ...t, failed: t.failed + 1 })), sample(`after call ${e.call} failed`)))
  )

  const started = yield* Clock.currentTimeMillis
  const elapsed = Effect.map(Clock.currentTimeMillis, (now) => now - started)
  const progress = Effect.fnUntraced(function*(label: string) {
    const sampled = yield* sample(label)
    yield* say(progressRow(yield* elapsed, sampled.tally, sampled.snapshot))
    return sampled
  })

  yield* say(
    `Fan-out: ${options.calls} calls, ${options.concurrency} at a time, one budget of ` +
      `${fmtTokens(options.tokenCap)} tokens / $${options.usdCap.toFixed(2)}` +
      (options.seed === undefined ? "" : ` (seed ${options.seed})`) + "\n\n" +
      progressHeader(options.calls)
  )
  const ticker = yield* Effect.forkChild(Effect.forever(Effect.andThen(
    Effect.sleep(options.progressEveryMs * options.latencyScale),
    progress("at a progress tick")
  )))
  yield* Effect.forEach(plan, callOne, { concurrency: options.concurrency, discard: true })
  yield* Fiber.interrupt(ticker)

  // --- the final check ---
  const { snapshot: final, tally: t } = yield* progress("at the end")
  const finalNanos = usdToNanos(final.usdUsed)
  const problems = [...t.violations]
  const refused = t.refused.tokens + t.refused.usd
  if (t.completed + refused + t.failed !== options.calls) {
    problems.push(`${options.calls} calls planned but ${t.completed + refused + t.failed} accounted for`)
  }
  if (final.tokensUsed > final.tokenCap + t.tokensOverage) {
    problems.push(`tokens used ${fmtTokens(final.tokensUsed)} > cap + reported overage`)
  }
  if (finalNanos > usdToNanos(final.usdCap) + t.nanosOverage) {
    problems.push(`USD used ${fmtUsd(final.usdUsed)} > cap + reported overage`)
  }
  if (final.tokensReserved !== 0 || final.usdReserved !== 0) {
    problems.push(`holds leaked: ${fmtTokens(final.tokensReserved)} tokens / ${fmtUsd(final.usdReserved)} still reserved`)
  }
  if (final.tokensUsed !== t.tokensCharged || finalNanos !== t.nanosCharged) {
    problems.push("the budget's used counters differ from the sum of what commits charged")
  }
  if (refused === 0) problems.push("the budget never ran out: raise `calls` or lower the caps")

  return {
    calls: options.calls,
    completed: t.completed,
    refused: t.refused,
    failed: t.failed,
    overEstimate: t.overEstimate,
    overageCommits: t.overageCommits,
    tokensOverage: t.tokensOverage,
    usdOverage: t.nanosOverage / 1e9,
    peakTokens: t.peakTokens,
    peakUsd: t.peakNanos / 1e9,
    samples: t.samples,
    elapsedMs: yield* elapsed,
    final,
    problems,
    ok: problems.length === 0
  } satisfies FanoutReport
})

export const printReport = (r: FanoutReport): Effect.Effect<void> => {
  const s = r.final
  const refused = r.refused.tokens + r.refused.usd
  const wentOver = r.tokensOverage > 0 || r.usdOverage > 0
  const overBy = [
    r.tokensOverage > 0 ? `${fmtTokens(r.tokensOverage)} tokens` : undefined,
    r.usdOverage > 0 ? `$${r.usdOverage.toFixed(6)}` : undefined
  ].filter((part) => part !== undefined).join(" and ")
  const overage = wentOver
    ? `${callsText(r.overEstimate)} used more than they held; for ${r.overageCommits} of them no room was left, ` +
      `taking the budget past its cap by ${overBy} (charged anyway: that usage happened)`
    : `${callsText(r.overEstimate)} used more than they held, all covered by free room: no overage`
  const lines = [
    "",
    `Done in ${fmtSecs(r.elapsedMs)}`,
    `  calls     ${r.completed} completed, ${refused} refused ` +
    `(${r.refused.tokens} on tokens, ${r.refused.usd} on USD), ${r.failed} failed (holds released)`,
    `  tokens    ${fmtTokens(s.tokensUsed)} of ${fmtTokens(s.tokenCap)} used (${pct(s.tokensUsed, s.tokenCap)}); ` +
    `peak used+held ${fmtTokens(r.peakTokens)} (${pct(r.peakTokens, s.tokenCap)})`,
    `  usd       ${fmtUsd(s.usdUsed)} of ${fmtUsd(s.usdCap)} used (${pct(s.usdUsed, s.usdCap)}); ` +
    `peak used+held ${fmtUsd(r.peakUsd)} (${pct(r.peakUsd, s.usdCap)})`,
    `  estimates ${overage}`,
    r.ok
      ? `  check     OK: within caps${wentOver ? " (plus the reported overage)" : ""} in all ${r.samples} ` +
        `snapshots, 0 held at the end, used = sum of commits`
      : `  check     FAILED:\n${r.problems.slice(0, 10).map((p) => `    - ${p}`).join("\n")}` +
        (r.problems.length > 10 ? `\n    ... and ${r.problems.length - 10} more` : "")
  ]
  return Console.log(lines.join("\n"))
}

// --- simulated time ---------------------------------------------------------

/** Milliseconds between moves of the simulated clock: simulated time unpaced, wall time paced. */
const stepMs = 20

/**
 * Runs `effect` on a `TestClock` of its own, moving it until `effect` ends.
 * The clock wakes sleepers in order of time, and lets each woken fiber (and
 * what it resumes) run until it suspends before it wakes the next, so which
 * call finishes first, and what every snapshot reads, depends on the seed
 * only, not on timers, step sizes or machine load. Paced, the simulated
 * clock keeps up with the wall clock.
 */
const onSimulatedTime = (paced: boolean) => <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.gen(function*() {
    // Started by the clock's first wake-up, not by the scheduler, so how
    // long the process takes to get going cannot shift anything after it.
    const fiber = yield* Effect.forkChild(Effect.andThen(Effect.sleep(1), effect))
    const wallClock = TestClock.withLive(Clock.currentTimeMillis)
    const started = yield* wallClock
    const step = paced
      ? Effect.gen(function*() {
        yield* TestClock.withLive(Effect.sleep(stepMs))
        const behind = (yield* wallClock) - started - (yield* Clock.currentTimeMillis)
        yield* TestClock.adjust(Math.max(0, behind))
      })
      : TestClock.adjust(stepMs)
    while (fiber.pollUnsafe() === undefined) yield* step
    return yield* Fiber.join(fiber)
  }).pipe(
    // Waits for each woken fiber however long a loaded machine takes to run
    // it, rather than warn after a second and move on.
    Effect.provide(TestClock.layer({ warningDelay: "1 minute" }))
  )

/**
 * Runs the demo with its own budget; options default to `defaults`. Without
 * a seed, one is drawn and shown in the header, so `--seed=<it>` replays the
 * run.
 */
export const run = (overrides: Partial<FanoutOptions> = {}) =>
  Effect.flatMap(
    overrides.seed === undefined ? Random.nextIntBetween(1, 999_999) : Effect.succeed(overrides.seed),
    (seed) => {
      const options: FanoutOptions = { ...defaults, ...overrides, seed }
      return fanout(options).pipe(
        Effect.tap((report) => options.quiet ? Effect.void : printReport(report)),
        Effect.provide(Budget.layer({ name: "demo", tokenCap: options.tokenCap, usdCap: options.usdCap })),
        onSimulatedTime(options.paced),
        Random.withSeed(seed)
      )
    }
  )

// --- entry point: only when run directly, not when imported by a test -----

const isMain = process.argv[1] !== undefined &&
  import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href

if (isMain) {
  const seedArg = process.argv.find((arg) => arg.startsWith("--seed="))?.slice("--seed=".length)
  // `--seed=42` seeds like `run({ seed: 42 })`, so a test's run can be replayed here.
  const seed = seedArg === undefined || Number.isNaN(Number(seedArg)) ? seedArg : Number(seedArg)
  Effect.runPromise(run({ seed })).then(
    (report) => {
      process.exitCode = report.ok ? 0 : 1
    },
    (error: unknown) => {
      console.error(error)
      process.exitCode = 1
    }
  )
}
