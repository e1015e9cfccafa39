import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Fiber, Layer, Logger, Schema, Stream } from "effect"
import type { Scope } from "effect"
import { TestClock } from "effect/testing"
import { AiError, LanguageModel, Model, Prompt, Telemetry, Tokenizer, Tool, Toolkit } from "effect/ai"
import {
  Budget,
  type BudgetEvent,
  BudgetedLanguageModel,
  type BudgetOptions,
  type BudgetService,
  Pricing
} from "../src/index.ts"
import { yields } from "../src/BudgetStoreContract.ts"
import { eventually } from "./support/poll.ts"
import { type Reply, scriptedModel, usage } from "./support/scriptedModel.ts"

// USD per million tokens, and what they make of the usage below:
// 1000 uncached × $1 + 2000 cache reads × $0.1 + 400 cache writes × $1.25
// + 200 text × $4 + 100 reasoning × $8 = 3,300,000 nano-dollars.
const prices = { "test-model": { input: 1, cacheRead: 0.1, cacheWrite: 1.25, output: 4, reasoning: 8 } }
const reported = usage({ uncached: 1000, total: 3400, cacheRead: 2000, cacheWrite: 400 }, { total: 300, text: 200, reasoning: 100 })
const reportedTokens = 3700
const reportedUsd = 0.0033

// "hello world": ⌈11 / 4⌉ + 4 for its one message = 7 input tokens, plus the
// 500 output tokens the layer holds; priced 7 × $1 + 500 × $4 per million.
const prompt = "hello world"
const estimateTokens = 507
const estimateUsd = 0.002007

interface Setup {
  readonly budget?: BudgetOptions | undefined
  readonly model?: BudgetedLanguageModel.Options | undefined
}

/** A budget, a scripted provider, and the provider wrapped by the budget. */
const setup = Effect.fnUntraced(function*(
  script: (budget: BudgetService) => (prompt: Prompt.Prompt, call: number) => Reply,
  options: Setup = {}
) {
  const budget = yield* Budget.make({ name: "b", thresholds: [], ...options.budget })
  const provider = yield* scriptedModel(script(budget))
  const model = yield* BudgetedLanguageModel.make({
    price: Pricing.perMillionTokens(prices),
    maxOutputTokens: 500,
    ...options.model
  }).pipe(
    Effect.provideService(LanguageModel.LanguageModel, provider.service),
    Effect.provideService(Budget, budget)
  )
  return { budget, provider, model }
})

const counters = (budget: BudgetService) =>
  Effect.map(budget.snapshot, (s) => ({
    tokensUsed: s.tokensUsed,
    usdUsed: s.usdUsed,
    tokensReserved: s.tokensReserved,
    usdReserved: s.usdReserved
  }))

const settledAt = (tokensUsed: number, usdUsed: number) => ({ tokensUsed, usdUsed, tokensReserved: 0, usdReserved: 0 })

/** Starts collecting `budget`'s events; the returned effect stops and reads them. */
const listen = (budget: BudgetService) =>
  Effect.gen(function*() {
    const seen: Array<BudgetEvent> = []
    const fiber = yield* Effect.forkChild(Stream.runForEach(budget.events, (event) => Effect.sync(() => seen.push(event))))
    yield* yields
    return Effect.as(Effect.andThen(yields, Fiber.interrupt(fiber)), seen)
  })

/** A logger that keeps warnings and errors. */
const captureLogs = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    if (logLevel === "Warn" || logLevel === "Error") {
      lines.push(`${logLevel}: ${Array.isArray(message) ? message.join(" ") : String(message)}`)
    }
  })
  return { lines, layer: Logger.layer([logger]) }
}

describe("BudgetedLanguageModel", () => {
  describe("settling with the provider's usage", () => {
    it.effect("generateText holds the estimate while it runs, then commits the usage exactly", () =>
      Effect.gen(function*() {
        let during: unknown
        const { budget, model } = yield* setup((budget) => () => ({
          text: "hi",
          usage: reported,
          modelId: "test-model",
          before: Effect.map(counters(budget), (c) => {
            during = c
          })
        }))
        const response = yield* model.generateText({ prompt })
        assert.strictEqual(response.text, "hi")
        assert.deepStrictEqual(during, { tokensUsed: 0, usdUsed: 0, tokensReserved: estimateTokens, usdReserved: estimateUsd })
        assert.deepStrictEqual(yield* counters(budget), settledAt(reportedTokens, reportedUsd))
      }))

    it.effect("generateObject commits the usage exactly and keeps the decoded value", () =>
      Effect.gen(function*() {
        const { budget, model } = yield* setup(() => () => ({ text: "{\"title\":\"Budgets\"}", usage: reported }))
        const response = yield* model.generateObject({ prompt, schema: Schema.Struct({ title: Schema.String }) })
        const title: string = response.value.title
        assert.strictEqual(title, "Budgets")
        assert.deepStrictEqual(yield* counters(budget), settledAt(reportedTokens, reportedUsd))
      }))

    it.effect("streamText holds from its start and commits the finish part's usage at its end", () =>
      Effect.gen(function*() {
        let during: unknown
        const { budget, model } = yield* setup((budget) => () => ({
          text: "one two three",
          usage: reported,
          before: Effect.map(counters(budget), (c) => {
            during = c
          })
        }))
        const parts = yield* Stream.runCollect(model.streamText({ prompt }))
        assert.strictEqual(parts.filter((p) => p.type === "text-delta").map((p) => p.delta).join(""), "one two three")
        assert.deepStrictEqual(during, { tokensUsed: 0, usdUsed: 0, tokensReserved: estimateTokens, usdReserved: estimateUsd })
        assert.deepStrictEqual(yield* counters(budget), settledAt(reportedTokens, reportedUsd))
      }))

    it.effect("the layer wraps the LanguageModel in context with no change to the calling code", () =>
      Effect.gen(function*() {
        const provider = yield* scriptedModel(() => ({ text: "ok", usage: reported }))
        const Team = Budget.layer({ name: "team", tokenCap: 10_000 })
        const Model = BudgetedLanguageModel.layer({ price: Pricing.perMillionTokens(prices) }).pipe(
          Layer.provide(provider.layer),
          Layer.provide(Team)
        )
        const program = Effect.gen(function*() {
          const response = yield* LanguageModel.generateText({ prompt })
          return response.text
        })
        const text = yield* Effect.provide(program, Layer.merge(Model, Team))
        assert.strictEqual(text, "ok")
      }))

    it.effect("a call is charged to the Budget in the caller's context, else to the layer's", () =>
      Effect.gen(function*() {
        const { budget, model } = yield* setup(() => () => ({ text: "ok", usage: reported }))
        const agent = yield* budget.child("agent")
        yield* Effect.provideService(model.generateText({ prompt }), Budget, agent)
        assert.strictEqual((yield* agent.snapshot).tokensUsed, reportedTokens)
        yield* model.generateText({ prompt })
        assert.strictEqual((yield* agent.snapshot).tokensUsed, reportedTokens)
        assert.strictEqual((yield* budget.snapshot).tokensUsed, 2 * reportedTokens)
      }))

    it.effect("a call is priced as the model the response names, else Model.ModelName, else the layer's model", () =>
      Effect.gen(function*() {
        const price = Pricing.perMillionTokens({
          "cheap": { input: 0.5, output: 0.5 },
          "test-model": { input: 1, output: 4 },
          "big": { input: 20, output: 20 }
        })
        const hundred = usage({ total: 100 }, { total: 100 })
        const { budget, model } = yield* setup(() => (_, call) => ({
          usage: hundred,
          modelId: call === 1 ? "cheap" : undefined
        }), { model: { price } })
        const spent = Effect.map(budget.snapshot, (s) => s.usdUsed)
        yield* Effect.provideService(model.generateText({ prompt }), Model.ModelName, "test-model")
        const byResponse = yield* spent
        yield* Effect.provideService(model.generateText({ prompt }), Model.ModelName, "test-model")
        const byContext = (yield* spent) - byResponse
        yield* model.generateText({ prompt })
        const unnamed = (yield* spent) - byResponse - byContext
        // 100 + 100 tokens at $0.5, $1 + $4, and the highest prices ($20 + $20) per million
        assert.deepStrictEqual([byResponse, byContext, unnamed].map((usd) => Math.round(usd * 1e9)), [100_000, 500_000, 4_000_000])
        const named = yield* setup(() => () => ({ usage: hundred }), { model: { price, model: "test-model" } })
        yield* named.model.generateText({ prompt })
        assert.strictEqual((yield* named.budget.snapshot).usdUsed, 0.0005)
      }))

    it.effect("a toolkit's calls are resolved and typed as without the wrapper", () =>
      Effect.gen(function*() {
        const GetWeather = Tool.make("GetWeather", {
          parameters: Schema.Struct({ city: Schema.String }),
          success: Schema.String
        })
        const Tools = Toolkit.make(GetWeather)
        const { budget, model } = yield* setup(() => () => ({
          toolCalls: [{ id: "c1", name: "GetWeather", params: { city: "Paris" } }],
          usage: reported
        }))
        const response = yield* model.generateText({ prompt, toolkit: Tools }).pipe(
          Effect.provide(Tools.toLayer({ GetWeather: ({ city }) => Effect.succeed(`sunny in ${city}`) }))
        )
        // typed as without the wrapper: the tool's name, its success or a denial
        const name: "GetWeather" = response.toolResults[0]!.name
        const result: string | { readonly type: string } = response.toolResults[0]!.result
        assert.deepStrictEqual([name, result], ["GetWeather", "sunny in Paris"])
        assert.deepStrictEqual(yield* counters(budget), settledAt(reportedTokens, reportedUsd))
      }))
  })

  describe("estimates", () => {
    it.effect("input tokens come from a Tokenizer in context, else from the prompt's length", () =>
      Effect.gen(function*() {
        const held: Array<number> = []
        const { model } = yield* setup((budget) => () => ({
          usage: reported,
          before: Effect.map(budget.snapshot, (s) => {
            held.push(s.tokensReserved)
          })
        }))
        const tokenizer = Tokenizer.make({ tokenize: () => Effect.succeed(Array.from({ length: 42 }, (_, i) => i)) })
        yield* Effect.provideService(model.generateText({ prompt }), Tokenizer.Tokenizer, tokenizer)
        const long = [
          { role: "system" as const, content: "x".repeat(40) },
          { role: "user" as const, content: [{ type: "text" as const, text: "y".repeat(81) }] }
        ]
        yield* model.generateText({ prompt: long })
        // ⌈(40 + 81) / 4⌉ + 2 messages × 4 = 39
        assert.deepStrictEqual(held, [42 + 500, 39 + 500])
      }))

    it.effect("withCallOptions overrides the estimate and the output allowance per call", () =>
      Effect.gen(function*() {
        const held: Array<readonly [number, number]> = []
        const { model } = yield* setup((budget) => () => ({
          usage: reported,
          before: Effect.map(budget.snapshot, (s) => {
            held.push([s.tokensReserved, s.usdReserved])
          })
        }))
        yield* model.generateText({ prompt }).pipe(BudgetedLanguageModel.withCallOptions({ maxOutputTokens: 2000 }))
        yield* BudgetedLanguageModel.withCallOptions(model.generateText({ prompt }), { inputTokens: 100, usd: 0.5 })
        // nested: the inner options win, the outer ones fill in
        yield* model.generateText({ prompt }).pipe(
          BudgetedLanguageModel.withCallOptions({ inputTokens: 10 }),
          BudgetedLanguageModel.withCallOptions({ inputTokens: 99, maxOutputTokens: 90 })
        )
        // a stream takes the options around the effect that runs it
        yield* Stream.runDrain(model.streamText({ prompt })).pipe(
          BudgetedLanguageModel.withCallOptions({ maxOutputTokens: 2000 })
        )
        assert.deepStrictEqual(held, [[2007, 0.008007], [600, 0.5], [100, 0.00037], [2007, 0.008007]])
      }))

    it.effect("an under-estimate is charged in full and its overage reported", () =>
      Effect.gen(function*() {
        const log = captureLogs()
        const { budget, model } = yield* setup(() => () => ({ usage: reported }), { budget: { tokenCap: 1000 } })
        const stop = yield* listen(budget)
        yield* model.generateText({ prompt }).pipe(Effect.provide(log.layer))
        const committed = (yield* stop).find((e) => e._tag === "Committed")
        assert.deepStrictEqual(committed, {
          _tag: "Committed",
          budget: "b",
          tokens: reportedTokens,
          usd: reportedUsd,
          tokensOverage: reportedTokens - 1000,
          usdOverage: 0,
          estimated: false
        })
        const snap = yield* budget.snapshot
        assert.deepStrictEqual([snap.tokensUsed, snap.tokensRemaining], [reportedTokens, 0])
        assert.strictEqual(log.lines.length, 1)
        assert.include(log.lines[0], `past its cap by ${reportedTokens - 1000} tokens`)
      }))

    it.effect("an over-estimate gives the rest back", () =>
      Effect.gen(function*() {
        const small = usage({ total: 20 }, { total: 5 })
        const { budget, model } = yield* setup(() => () => ({ usage: small }), { budget: { tokenCap: 100_000 } })
        yield* model.generateText({ prompt }).pipe(BudgetedLanguageModel.withCallOptions({ maxOutputTokens: 50_000 }))
        // 20 × $1 + 5 × $4 per million
        assert.deepStrictEqual(yield* counters(budget), settledAt(25, 0.00004))
        assert.strictEqual((yield* budget.snapshot).tokensRemaining, 100_000 - 25)
      }))

    it.effect("a side the provider leaves out is charged at its estimate", () =>
      Effect.gen(function*() {
        const { budget, model } = yield* setup(() => () => ({ usage: usage({}, { total: 30 }) }))
        yield* model.generateText({ prompt })
        // 7 estimated input tokens + 30 reported output tokens
        assert.deepStrictEqual(yield* counters(budget), settledAt(37, 0.000127))
      }))

    it.effect("a provider that reports no usage is charged the estimate, with a warning and an estimated commit", () =>
      Effect.gen(function*() {
        const log = captureLogs()
        const { budget, model } = yield* setup(() => () => ({ text: "no usage here" }))
        const stop = yield* listen(budget)
        yield* model.generateText({ prompt }).pipe(Effect.provide(log.layer))
        assert.deepStrictEqual(yield* counters(budget), settledAt(estimateTokens, estimateUsd))
        yield* Stream.runDrain(model.streamText({ prompt })).pipe(Effect.provide(log.layer))
        assert.deepStrictEqual(yield* counters(budget), settledAt(2 * estimateTokens, 2 * estimateUsd))
        assert.deepStrictEqual(log.lines, [
          `Warn: LanguageModel.generateText reported no usage: charged its estimate of ${estimateTokens} tokens / $${estimateUsd} to budget "b"`,
          `Warn: LanguageModel.streamText reported no usage: charged its estimate of ${estimateTokens} tokens / $${estimateUsd} to budget "b"`
        ])
        const commits = (yield* stop).flatMap((e) => e._tag === "Committed" ? [e.estimated] : [])
        assert.deepStrictEqual(commits, [true, true])
      }))

    it.effect("a price function that returns no usable number for the usage charges the estimate's price", () =>
      Effect.gen(function*() {
        const log = captureLogs()
        const { budget, model } = yield* setup(() => () => ({ usage: reported }), {
          model: { price: (u) => u.outputTokens.total === 300 ? Number.NaN : 0.25 }
        })
        yield* model.generateText({ prompt }).pipe(Effect.provide(log.layer))
        assert.deepStrictEqual(yield* counters(budget), settledAt(reportedTokens, 0.25))
        assert.strictEqual(log.lines.length, 1)
        assert.include(log.lines[0], "Invalid price(usage, <no model name>): must be a dollar amount")
      }))
  })

  describe("failed calls", () => {
    // What a provider billed: 5,000 input and 2,000 output tokens, priced
    // 5,000 × $1 + 2,000 × $4 per million.
    const billed = usage({ uncached: 5000, total: 5000 }, { total: 2000, text: 2000 })
    const billedTokens = 7000
    const billedUsd = 0.013
    const Title = Schema.Struct({ title: Schema.String })
    const release = { model: { onFailure: "release" as const } }

    it.effect("generateObject whose output does not decode is charged the usage the provider reported", () =>
      Effect.gen(function*() {
        for (const options of [{}, release]) {
          const { budget, model } = yield* setup(
            () => () => ({ text: "{\"title\":5}", usage: billed, modelId: "test-model" }),
            options
          )
          const error = yield* Effect.flip(model.generateObject({ prompt, schema: Title }))
          assert.strictEqual(error.reason._tag, "StructuredOutputError")
          assert.deepStrictEqual(yield* counters(budget), settledAt(billedTokens, billedUsd))
        }
      }))

    it.effect("the span transformer in context still sees generateObject's response, the caller's over the layer's", () =>
      Effect.gen(function*() {
        const seen: Array<string> = []
        const transformer = (name: string): Telemetry.SpanTransformer => ({ response }) => {
          seen.push(`${name}: ${response.map((part) => part.type).join(" ")}`)
        }
        const provider = yield* scriptedModel(() => ({ text: "{\"title\":\"Budgets\"}", usage: billed }))
        const budget = yield* Budget.make({ name: "b", thresholds: [] })
        const model = yield* BudgetedLanguageModel.make({}).pipe(
          Effect.provideService(LanguageModel.LanguageModel, provider.service),
          Effect.provideService(Budget, budget),
          Effect.provideService(Telemetry.CurrentSpanTransformer, transformer("layer"))
        )
        yield* model.generateObject({ prompt, schema: Title })
        yield* model.generateObject({ prompt, schema: Title }).pipe(
          Effect.provideService(Telemetry.CurrentSpanTransformer, transformer("caller"))
        )
        assert.deepStrictEqual(seen, ["layer: text finish", "caller: text finish"])
        assert.strictEqual((yield* budget.snapshot).tokensUsed, 2 * billedTokens)
      }))

    it.effect("generateObject whose output does not decode, with no usage reported, is charged its estimate", () =>
      Effect.gen(function*() {
        const log = captureLogs()
        const { budget, model } = yield* setup(() => () => ({ text: "not json" }))
        const error = yield* Effect.flip(model.generateObject({ prompt, schema: Title })).pipe(Effect.provide(log.layer))
        assert.strictEqual(error.reason._tag, "StructuredOutputError")
        assert.deepStrictEqual(yield* counters(budget), settledAt(estimateTokens, estimateUsd))
        assert.deepStrictEqual(log.lines, [
          `Warn: LanguageModel.generateObject failed without reporting usage: charged its estimate of ${estimateTokens} tokens / $${estimateUsd} to budget "b"`
        ])
        const released = yield* setup(() => () => ({ text: "not json" }), release)
        yield* Effect.flip(released.model.generateObject({ prompt, schema: Title }))
        assert.deepStrictEqual(yield* counters(released.budget), settledAt(0, 0))
      }))

    it.effect("a tool handler failing after the provider answered is charged the estimate, or nothing with onFailure: \"release\"", () =>
      Effect.gen(function*() {
        const Broken = Tool.make("Broken", {
          parameters: Schema.Struct({ city: Schema.String }),
          success: Schema.String,
          failure: Schema.String
        })
        const Tools = Toolkit.make(Broken)
        const handlers = Tools.toLayer({ Broken: () => Effect.fail("tool broke") })
        const script = () => () => ({
          toolCalls: [{ id: "c1", name: "Broken", params: { city: "Paris" } }],
          usage: billed
        })
        const log = captureLogs()
        const { budget, model } = yield* setup(script)
        const error = yield* Effect.flip(model.generateText({ prompt, toolkit: Tools })).pipe(
          Effect.provide(handlers),
          Effect.provide(log.layer)
        )
        assert.strictEqual(error, "tool broke")
        assert.deepStrictEqual(yield* counters(budget), settledAt(estimateTokens, estimateUsd))
        assert.deepStrictEqual(log.lines, [
          `Warn: LanguageModel.generateText failed without reporting usage: charged its estimate of ${estimateTokens} tokens / $${estimateUsd} to budget "b"`
        ])
        const released = yield* setup(script, release)
        yield* Effect.flip(released.model.generateText({ prompt, toolkit: Tools })).pipe(Effect.provide(handlers))
        assert.deepStrictEqual(yield* counters(released.budget), settledAt(0, 0))
      }))

    it.effect("a call interrupted after its hold is charged its estimate, or nothing with onFailure: \"release\"", () =>
      Effect.gen(function*() {
        for (const [options, charged] of [[{}, settledAt(estimateTokens, estimateUsd)], [release, settledAt(0, 0)]] as const) {
          const log = captureLogs()
          const started = yield* Deferred.make<void>()
          const { budget, model } = yield* setup(() => () => ({
            usage: reported,
            before: Effect.andThen(Deferred.succeed(started, undefined), Effect.never)
          }), options)
          const fiber = yield* Effect.forkChild(model.generateText({ prompt }).pipe(Effect.provide(log.layer)))
          yield* Deferred.await(started)
          assert.strictEqual((yield* budget.snapshot).tokensReserved, estimateTokens)
          yield* Fiber.interrupt(fiber)
          assert.deepStrictEqual(yield* counters(budget), charged)
          assert.deepStrictEqual(log.lines, options === release ? [] : [
            `Warn: LanguageModel.generateText was interrupted before reporting usage: charged its estimate of ${estimateTokens} tokens / $${estimateUsd} to budget "b"`
          ])
        }
      }))

    it.effect("a stream cut before its finish part is charged its estimate: failed, interrupted, or no longer read", () =>
      Effect.gen(function*() {
        const log = captureLogs()
        const { budget, model } = yield* setup(() => (_, call) =>
          call === 1 ? { text: "one two", fail: true } : { text: "one two three", hang: true }
        )
        const failed = yield* Effect.flip(Stream.runDrain(model.streamText({ prompt }))).pipe(Effect.provide(log.layer))
        assert.strictEqual(failed.reason._tag, "InternalProviderError")
        assert.deepStrictEqual(yield* counters(budget), settledAt(estimateTokens, estimateUsd))
        const firstPart = yield* Deferred.make<void>()
        const fiber = yield* Effect.forkChild(
          Stream.runForEach(model.streamText({ prompt }), () => Deferred.succeed(firstPart, undefined)).pipe(
            Effect.provide(log.layer)
          )
        )
        yield* Deferred.await(firstPart)
        yield* Fiber.interrupt(fiber)
        assert.deepStrictEqual(yield* counters(budget), settledAt(2 * estimateTokens, 2 * estimateUsd))
        const cut = yield* Stream.runCollect(Stream.take(model.streamText({ prompt }), 2)).pipe(Effect.provide(log.layer))
        assert.strictEqual(cut.length, 2)
        assert.deepStrictEqual(yield* counters(budget), settledAt(3 * estimateTokens, 3 * estimateUsd))
        assert.deepStrictEqual(log.lines, Array.from({ length: 3 }, () =>
          `Warn: LanguageModel.streamText stopped before reporting usage: charged its estimate of ${estimateTokens} tokens / $${estimateUsd} to budget "b"`))
      }))

    it.effect("a stream cut before its finish part is released with onFailure: \"release\", set on the layer or the call", () =>
      Effect.gen(function*() {
        const script = () => (_: Prompt.Prompt, call: number) =>
          call === 1 ? { text: "one two", fail: true } : { text: "one two three", hang: true }
        const layerWide = yield* setup(script, release)
        yield* Effect.flip(Stream.runDrain(layerWide.model.streamText({ prompt })))
        yield* Stream.runCollect(Stream.take(layerWide.model.streamText({ prompt }), 2))
        assert.deepStrictEqual(yield* counters(layerWide.budget), settledAt(0, 0))
        const perCall = yield* setup(script)
        yield* Effect.flip(Stream.runDrain(perCall.model.streamText({ prompt }))).pipe(
          BudgetedLanguageModel.withCallOptions({ onFailure: "release" })
        )
        yield* Stream.runCollect(Stream.take(perCall.model.streamText({ prompt }), 2)).pipe(
          BudgetedLanguageModel.withCallOptions({ onFailure: "release" })
        )
        assert.deepStrictEqual(yield* counters(perCall.budget), settledAt(0, 0))
      }))

    it.effect("a stream whose consumer fails or is interrupted after the finish part is charged the reported usage", () =>
      Effect.gen(function*() {
        const { budget, model } = yield* setup(() => () => ({ text: "one two three", usage: billed }), release)
        const error = yield* Effect.flip(
          Stream.runForEach(model.streamText({ prompt }), (part) => part.type === "finish" ? Effect.fail("consumer broke") : Effect.void)
        )
        assert.strictEqual(error, "consumer broke")
        assert.deepStrictEqual(yield* counters(budget), settledAt(billedTokens, billedUsd))
        const finished = yield* Deferred.make<void>()
        const fiber = yield* Effect.forkChild(Stream.runForEach(model.streamText({ prompt }), (part) =>
          part.type === "finish" ? Effect.andThen(Deferred.succeed(finished, undefined), Effect.never) : Effect.void))
        yield* Deferred.await(finished)
        yield* Fiber.interrupt(fiber)
        assert.deepStrictEqual(yield* counters(budget), settledAt(2 * billedTokens, 2 * billedUsd))
      }))

    it.effect("a provider error before any answer releases the hold (not billed) and keeps its own error", () =>
      Effect.gen(function*() {
        const { budget, model } = yield* setup(() => () => ({ refuse: true }))
        const error = yield* Effect.flip(model.generateText({ prompt }))
        assert.strictEqual(error.reason._tag, "InternalProviderError")
        const streamed = yield* Effect.flip(Stream.runDrain(model.streamText({ prompt })))
        assert.strictEqual(streamed.reason._tag, "InternalProviderError")
        assert.deepStrictEqual(yield* counters(budget), settledAt(0, 0))
      }))
  })

  describe("refusing", () => {
    it.effect("a refused call fails with an AiError carrying the BudgetExceeded, before reaching the provider", () =>
      Effect.gen(function*() {
        const { budget, model, provider } = yield* setup(() => () => ({ usage: reported }), {
          budget: { tokenCap: 100 }
        })
        const error = yield* Effect.flip(model.generateText({ prompt }))
        assert.strictEqual(error._tag, "AiError")
        assert.strictEqual(error.reason._tag, "QuotaExhaustedError")
        assert.isFalse(error.isRetryable)
        assert.strictEqual(
          error.message,
          `BudgetedLanguageModel.generateText: Budget "b" refused ${estimateTokens} tokens: used + reserved + ` +
            `requested would be ${estimateTokens} tokens, over its cap of 100 tokens`
        )
        const exceeded = yield* Effect.flip(BudgetedLanguageModel.unwrapBudgetExceeded(model.generateText({ prompt })))
        assert.strictEqual(exceeded._tag, "BudgetExceeded")
        assert.deepStrictEqual(
          exceeded._tag === "BudgetExceeded" ? [exceeded.budget, exceeded.axis, exceeded.requested, exceeded.cap] : [],
          ["b", "tokens", estimateTokens, 100]
        )
        // survives encoding, as a log shipper or an RPC boundary would
        const decoded = Schema.decodeUnknownSync(AiError.AiError)(Schema.encodeSync(AiError.AiError)(error))
        assert.strictEqual(BudgetedLanguageModel.budgetExceededOf(decoded)?.requested, estimateTokens)
        const streamed = yield* Effect.flip(
          BudgetedLanguageModel.unwrapBudgetExceeded(Stream.runDrain(model.streamText({ prompt })))
        )
        assert.strictEqual(streamed._tag, "BudgetExceeded")
        assert.strictEqual(provider.calls(), 0)
        assert.deepStrictEqual(yield* counters(budget), settledAt(0, 0))
      }))

    it.effect("a refusal by the budget's rate carries its retryAfter, also encoded and decoded", () =>
      Effect.gen(function*() {
        const { model, provider } = yield* setup(() => () => ({ usage: usage({ total: 7 }, { total: 500 }) }), {
          budget: { rate: { tokens: 1_000, per: "1 minute" } }
        })
        yield* model.generateText({ prompt })
        const error = yield* Effect.flip(model.generateText({ prompt }))
        assert.strictEqual(error.reason._tag, "QuotaExhaustedError")
        const decoded = Schema.decodeUnknownSync(AiError.AiError)(Schema.encodeSync(AiError.AiError)(error))
        for (const refused of [BudgetedLanguageModel.budgetExceededOf(error), BudgetedLanguageModel.budgetExceededOf(decoded)]) {
          assert.deepStrictEqual([refused?.budget, refused?.limit, refused?.requested], ["b", "rate", estimateTokens])
          // 14 tokens short, at 1,000 a minute
          assert.strictEqual(Duration.toMillis(refused!.retryAfter!), 840)
        }
        assert.include(error.message, "retry after 840ms")
        assert.strictEqual(provider.calls(), 1)
      }))

    it.effect("1,000 concurrent calls on a budget for 300: never past a cap, the refused never reach the provider", () =>
      Effect.gen(function*() {
        let peakTokens = 0
        let peakUsd = 0
        const { budget, model, provider } = yield* setup((budget) => () => ({
          usage: usage({ total: 50 }, { total: 50 }),
          before: Effect.gen(function*() {
            const s = yield* budget.snapshot
            peakTokens = Math.max(peakTokens, s.tokensUsed + s.tokensReserved)
            peakUsd = Math.max(peakUsd, s.usdUsed + s.usdReserved)
            yield* Effect.yieldNow
          })
        }), { budget: { tokenCap: 30_000, usdCap: 0.075 } })
        // each call holds and spends 100 tokens, $0.00025
        const outcomes = yield* Effect.forEach(
          Array.from({ length: 1000 }, () => 0),
          () =>
            model.generateText({ prompt }).pipe(
              BudgetedLanguageModel.withCallOptions({ inputTokens: 50, maxOutputTokens: 50 }),
              BudgetedLanguageModel.unwrapBudgetExceeded,
              Effect.as("done"),
              Effect.catchTag("BudgetExceeded", () => Effect.succeed("refused"))
            ),
          { concurrency: "unbounded" }
        )
        assert.strictEqual(outcomes.filter((o) => o === "done").length, 300)
        assert.strictEqual(outcomes.filter((o) => o === "refused").length, 700)
        assert.strictEqual(provider.calls(), 300)
        assert.isAtMost(peakTokens, 30_000)
        assert.isAtMost(peakUsd, 0.075)
        assert.deepStrictEqual(yield* counters(budget), settledAt(30_000, 0.075))
      }))

    it.effect("onExceeded: \"wait\" per call waits for room instead of failing", () =>
      Effect.gen(function*() {
        const gate = yield* Deferred.make<void>()
        const order: Array<string> = []
        const { budget, model } = yield* setup(() => (_, call) => ({
          usage: usage({ total: 50 }, { total: 50 }),
          before: call === 1
            ? Effect.andThen(Deferred.await(gate), Effect.sync(() => order.push("first")))
            : Effect.sync(() => order.push("second"))
        }), { budget: { tokenCap: 1000 } })
        const first = yield* Effect.forkChild(
          model.generateText({ prompt }).pipe(BudgetedLanguageModel.withCallOptions({ inputTokens: 500, maxOutputTokens: 500 }))
        )
        yield* yields
        const second = yield* Effect.forkChild(
          model.generateText({ prompt }).pipe(
            BudgetedLanguageModel.withCallOptions({ inputTokens: 400, maxOutputTokens: 100, onExceeded: "wait" })
          )
        )
        yield* yields
        assert.deepStrictEqual(order, [])
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(first)
        yield* Fiber.join(second)
        assert.deepStrictEqual(order, ["first", "second"])
        assert.deepStrictEqual(yield* counters(budget), settledAt(200, 0.0005))
      }))

    it.effect("onExceeded: \"wait\" per layer, and a call can still ask to fail", () =>
      Effect.gen(function*() {
        const gate = yield* Deferred.make<void>()
        const { model, provider } = yield* setup(() => (_, call) => ({
          usage: usage({ total: 50 }, { total: 50 }),
          before: call === 1 ? Deferred.await(gate) : Effect.void
        }), { budget: { tokenCap: 1000 }, model: { onExceeded: "wait", maxOutputTokens: 500 } })
        const first = yield* Effect.forkChild(
          model.generateText({ prompt }).pipe(BudgetedLanguageModel.withCallOptions({ inputTokens: 500 }))
        )
        yield* yields
        const refused = yield* Effect.flip(BudgetedLanguageModel.unwrapBudgetExceeded(
          model.generateText({ prompt }).pipe(BudgetedLanguageModel.withCallOptions({ onExceeded: "fail" }))
        ))
        assert.strictEqual(refused._tag, "BudgetExceeded")
        const waiting = yield* Effect.forkChild(model.generateText({ prompt }))
        yield* yields
        assert.strictEqual(provider.calls(), 1)
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(first)
        yield* Fiber.join(waiting)
        assert.strictEqual(provider.calls(), 2)
      }))
  })

  describe("per-model limits", () => {
    // Each call holds and spends 100 tokens.
    const hundred = usage({ total: 50 }, { total: 50 })
    const sized = BudgetedLanguageModel.withCallOptions({ inputTokens: 50, maxOutputTokens: 50 })

    /** A call as `name` (by `Model.ModelName`; left out, none): "ok", or the path of the budget that refused it. */
    const outcome = (model: LanguageModel.LanguageModel, name?: string) => {
      const call = model.generateText({ prompt }).pipe(
        BudgetedLanguageModel.unwrapBudgetExceeded,
        Effect.as("ok"),
        Effect.catchTag("BudgetExceeded", (e) => Effect.succeed(e.budget))
      )
      return name === undefined ? call : Effect.provideService(call, Model.ModelName, name)
    }
    const outcomes = (model: LanguageModel.LanguageModel, name: string | undefined, n: number) =>
      Effect.forEach(Array.from({ length: n }), () => outcome(model, name))

    it.effect("calls over a model's TPM wait in line and all run as its bucket refills; the budget's caps apply in the same step", () =>
      Effect.gen(function*() {
        const { budget, model, provider } = yield* setup(() => () => ({ usage: hundred }), {
          budget: { tokenCap: 650 },
          model: {
            model: "gpt-5-mini",
            onExceeded: "wait",
            limits: { "gpt-5-mini": { rate: { tokens: 200, per: "1 minute" } } }
          }
        })
        const calls = yield* Effect.forkChild(Effect.all(
          Array.from({ length: 6 }, () => sized(BudgetedLanguageModel.unwrapBudgetExceeded(model.generateText({ prompt })))),
          { concurrency: "unbounded" }
        ))
        yield* eventually("two calls reached the provider", Effect.sync(() => provider.calls() === 2))
        yield* yields
        assert.strictEqual(provider.calls(), 2, "200 tokens a minute: two calls of 100 at once, the rest wait")
        yield* TestClock.adjust("29999 millis")
        yield* yields
        assert.strictEqual(provider.calls(), 2, "99.99 tokens are not 100")
        yield* TestClock.adjust("1 millis")
        yield* eventually("the third call ran at the instant 100 tokens refilled", Effect.sync(() => provider.calls() === 3))
        yield* TestClock.adjust("90 seconds")
        const responses = yield* Fiber.join(calls)
        assert.strictEqual(responses.length, 6, "none refused")
        assert.strictEqual(provider.calls(), 6)
        assert.deepStrictEqual(yield* counters(budget), settledAt(600, 0.0015))
        // The bucket is full again, but the budget's cap has room for 50 tokens only.
        yield* TestClock.adjust("1 minute")
        const refused = yield* Effect.flip(
          sized(BudgetedLanguageModel.unwrapBudgetExceeded(model.generateText({ prompt }))).pipe(
            BudgetedLanguageModel.withCallOptions({ onExceeded: "fail" })
          )
        )
        assert.deepStrictEqual(
          refused._tag === "BudgetExceeded" ? [refused.budget, refused.limit, refused.attempted] : [],
          ["b", "cap", 700]
        )
        assert.strictEqual(provider.calls(), 6)
      }))

    it.effect("an exact name beats a prefix ending in \"*\", a longer prefix a shorter; a prefix's models share its limit", () =>
      Effect.gen(function*() {
        const { model, provider } = yield* setup(() => () => ({ usage: hundred }), {
          model: {
            limits: {
              "claude-*": { rate: { requests: 1, per: "1 minute" } },
              "claude-opus-4*": { rate: { requests: 2, per: "1 minute" } },
              "claude-opus-4-1": { rate: { requests: 3, per: "1 minute" } },
              "openai/*": { rate: { requests: 1, per: "1 minute" } }
            }
          }
        })
        assert.deepStrictEqual(yield* outcomes(model, "claude-haiku-4-5", 2), ["ok", "b/model:claude-*"])
        assert.deepStrictEqual(yield* outcomes(model, "claude-sonnet-4-5", 1), ["b/model:claude-*"], "the same bucket")
        assert.deepStrictEqual(yield* outcomes(model, "claude-opus-4-5", 3), ["ok", "ok", "b/model:claude-opus-4*"])
        assert.deepStrictEqual(yield* outcomes(model, "claude-opus-4-1", 4), ["ok", "ok", "ok", "b/model:claude-opus-4-1"])
        assert.deepStrictEqual(yield* outcomes(model, "claude", 3), ["ok", "ok", "ok"], "\"claude\" does not start with \"claude-\"")
        // a name has no "/": the key's is escaped in its budget's
        assert.deepStrictEqual(yield* outcomes(model, "openai/gpt-5-mini", 2), ["ok", "b/model:openai%2F*"])
        assert.strictEqual(provider.calls(), 1 + 2 + 3 + 3 + 1)
      }))

    it.effect("\"*\" limits every model without a limit of its own, an unnamed one included", () =>
      Effect.gen(function*() {
        const { model } = yield* setup(() => () => ({ usage: hundred }), {
          model: {
            limits: {
              "gpt-5-mini": { rate: { requests: 1, per: "1 minute" } },
              "*": { rate: { requests: 2, per: "1 minute" } }
            }
          }
        })
        assert.deepStrictEqual(yield* outcomes(model, "gpt-5-mini", 2), ["ok", "b/model:gpt-5-mini"])
        assert.deepStrictEqual(yield* outcome(model, "gpt-4o"), "ok")
        assert.deepStrictEqual(yield* outcomes(model, undefined, 2), ["ok", "b/model:*"])
      }))

    it.effect("a model without a limit charges the budget itself and is not rate-limited", () =>
      Effect.gen(function*() {
        const { budget, model, provider } = yield* setup(() => () => ({ usage: hundred }), {
          model: { limits: { "gpt-5-mini": { rate: { requests: 1, per: "1 hour" }, maxConcurrent: 1 } } }
        })
        const stop = yield* listen(budget)
        assert.deepStrictEqual(yield* outcomes(model, "gpt-5-mini", 2), ["ok", "b/model:gpt-5-mini"])
        assert.deepStrictEqual(yield* outcomes(model, "gpt-4o", 5), ["ok", "ok", "ok", "ok", "ok"])
        // an exact key is the exact name: a dated snapshot needs "gpt-5-mini*"
        assert.deepStrictEqual(yield* outcomes(model, "gpt-5-mini-2025-08-07", 2), ["ok", "ok"])
        assert.deepStrictEqual(yield* outcomes(model, undefined, 2), ["ok", "ok"], "an unnamed model")
        const concurrent = yield* Effect.all(
          Array.from({ length: 4 }, () => outcome(model, "gpt-4o")),
          { concurrency: "unbounded" }
        )
        assert.deepStrictEqual(concurrent, ["ok", "ok", "ok", "ok"])
        assert.strictEqual(provider.calls(), 1 + 5 + 2 + 2 + 4)
        const held = (yield* stop).flatMap((e) => e._tag === "Reserved" ? [e.budget] : [])
        assert.deepStrictEqual([held[0], new Set(held.slice(1))], ["b/model:gpt-5-mini", new Set(["b"])])
      }))

    it.effect("with onExceeded \"fail\", a call over its model's rate fails naming the model's budget and when to retry", () =>
      Effect.gen(function*() {
        const { budget, model, provider } = yield* setup(() => () => ({ usage: usage({ total: 7 }, { total: 500 }) }), {
          model: { model: "gpt-5-mini", limits: { "gpt-5-mini": { rate: { tokens: 1_000, per: "1 minute" } } } }
        })
        yield* model.generateText({ prompt })
        const error = yield* Effect.flip(model.generateText({ prompt }))
        assert.strictEqual(error.reason._tag, "QuotaExhaustedError")
        const refused = BudgetedLanguageModel.budgetExceededOf(error)!
        assert.deepStrictEqual(
          [refused.budget, refused.limit, refused.axis, refused.requested, refused.cap],
          ["b/model:gpt-5-mini", "rate", "tokens", estimateTokens, 1_000]
        )
        // 14 tokens short, at 1,000 a minute
        assert.strictEqual(Duration.toMillis(refused.retryAfter!), 840)
        assert.include(error.message, `Budget "b/model:gpt-5-mini" refused ${estimateTokens} tokens: its rate's bucket holds`)
        const streamed = yield* Effect.flip(BudgetedLanguageModel.unwrapBudgetExceeded(Stream.runDrain(model.streamText({ prompt }))))
        assert.deepStrictEqual(streamed._tag === "BudgetExceeded" ? [streamed.budget, streamed.limit] : [], ["b/model:gpt-5-mini", "rate"])
        assert.strictEqual(provider.calls(), 1)
        assert.deepStrictEqual(yield* counters(budget), settledAt(estimateTokens, estimateUsd))
        yield* TestClock.adjust("840 millis")
        yield* model.generateText({ prompt })
        assert.strictEqual(provider.calls(), 2)
      }))

    it.effect("a call charged to a budget of the caller's own is held on that budget's child for its model", () =>
      Effect.gen(function*() {
        const { budget, model } = yield* setup(() => () => ({ usage: hundred }), {
          model: { model: "gpt-5-mini", limits: { "gpt-5-mini": { rate: { requests: 1, per: "1 minute" } } } }
        })
        const agent = yield* budget.child("agent")
        const small = yield* budget.child("small", { tokenCap: 100 })
        const as = (payer: BudgetService) => <A, E>(effect: Effect.Effect<A, E>) => Effect.provideService(effect, Budget, payer)
        assert.deepStrictEqual(yield* as(agent)(outcomes(model, undefined, 2)), ["ok", "b/agent/model:gpt-5-mini"])
        assert.deepStrictEqual(yield* outcomes(model, undefined, 2), ["ok", "b/model:gpt-5-mini"])
        // its caps apply in the same step
        assert.deepStrictEqual(
          yield* as(small)(outcome(model).pipe(BudgetedLanguageModel.withCallOptions({ inputTokens: 101 }))),
          "b/small"
        )
        assert.strictEqual((yield* agent.snapshot).tokensUsed, 100)
        assert.strictEqual((yield* budget.snapshot).tokensUsed, 200)
      }))
  })

  describe("labels", () => {
    it.effect("each call is labelled with its model and provider, and the caller's labels, nested ones added", () =>
      Effect.gen(function*() {
        const { budget, model } = yield* setup(() => () => ({ text: "hi", usage: reported })).pipe(
          Effect.provideService(Model.ModelName, "test-model"),
          Effect.provideService(Model.ProviderName, "scripted")
        )
        const stop = yield* listen(budget)
        yield* model.generateText({ prompt }).pipe(
          BudgetedLanguageModel.withCallOptions({ labels: { feature: "search" } }),
          BudgetedLanguageModel.withCallOptions({ labels: { user: "ada", feature: "outer" } })
        )
        const seen = yield* stop
        const labelled = seen.filter((e) => e._tag === "Reserved" || e._tag === "Committed")
        assert.deepStrictEqual(labelled.map((e) => [e._tag, "labels" in e ? e.labels : undefined]), [
          ["Reserved", { model: "test-model", provider: "scripted", user: "ada", feature: "search" }],
          ["Committed", { model: "test-model", provider: "scripted", user: "ada", feature: "search" }]
        ])
      }))

    it.effect("bad labels in call options fail with InvalidUsage naming the label", () =>
      Effect.gen(function*() {
        const error = yield* Effect.flip(
          Effect.void.pipe(BudgetedLanguageModel.withCallOptions({ labels: { user: 7 as unknown as string } }))
        )
        assert.strictEqual(error.message, "Invalid labels.user: must be a string of at most 1024 characters, got 7")
      }))
  })

  describe("bad options", () => {
    it.effect("fail with InvalidUsage saying which option and why", () =>
      Effect.gen(function*() {
        const messages: Array<string> = []
        const invalid = (effect: Effect.Effect<unknown, unknown, Scope.Scope>) =>
          Effect.map(Effect.flip(effect), (error) => {
            assert.strictEqual((error as { _tag: string })._tag, "InvalidUsage")
            messages.push((error as Error).message)
          })
        const { budget, model, provider } = yield* setup(() => () => ({ usage: reported }))
        const wrap = (options: BudgetedLanguageModel.Options) =>
          BudgetedLanguageModel.make(options).pipe(
            Effect.provideService(LanguageModel.LanguageModel, provider.service),
            Effect.provideService(Budget, budget)
          )
        yield* invalid(wrap({ maxOutputTokens: -5 }))
        yield* invalid(wrap({ maxOutputTokens: 1.5 }))
        yield* invalid(wrap({ onExceeded: "maybe" as "wait" }))
        yield* invalid(wrap({ onFailure: "ignore" as "release" }))
        yield* invalid(wrap({ price: 0.002 as unknown as Pricing.PriceFunction }))
        yield* invalid(wrap({ price: Pricing.perMillionTokens({ "m": { input: 1, output: -2 } }) }))
        yield* invalid(model.generateText({ prompt }).pipe(BudgetedLanguageModel.withCallOptions({ usd: -0.5 })))
        yield* invalid(model.generateText({ prompt }).pipe(BudgetedLanguageModel.withCallOptions({ inputTokens: -1 })))
        yield* invalid(model.generateText({ prompt }).pipe(BudgetedLanguageModel.withCallOptions({ onFailure: "charge" as "release" })))
        assert.deepStrictEqual(messages, [
          "Invalid maxOutputTokens: must be a whole number of tokens, 0 or more, got -5",
          "Invalid maxOutputTokens: must be a whole number of tokens, 0 or more, got 1.5",
          "Invalid onExceeded: must be \"fail\" or \"wait\", got \"maybe\" (a string)",
          "Invalid onFailure: must be \"chargeEstimate\" or \"release\", got \"ignore\" (a string)",
          "Invalid price: must be a function (usage, model) => usd, or Pricing.perMillionTokens({...}), got 0.002",
          "Invalid prices[\"m\"].output: must be USD per million tokens, a number from 0 to 9007199, got -2",
          "Invalid usd: must be a dollar amount from 0 to 9007199, got -0.5",
          "Invalid inputTokens: must be a whole number of tokens, 0 or more, got -1",
          "Invalid onFailure: must be \"chargeEstimate\" or \"release\", got \"charge\" (a string)"
        ])
        assert.strictEqual(provider.calls(), 0)
      }))

    it.effect("bad limits fail with InvalidUsage naming the limit's field, and open no budget", () =>
      Effect.gen(function*() {
        const budget = yield* Budget.make({ name: "b" })
        const opened: Array<string> = []
        const watched: BudgetService = {
          ...budget,
          child: (name, options) => Effect.andThen(Effect.sync(() => opened.push(name)), budget.child(name, options))
        }
        const provider = yield* scriptedModel(() => ({ usage: reported }))
        const wrap = (limits: BudgetedLanguageModel.Options["limits"]) =>
          BudgetedLanguageModel.make({ limits }).pipe(
            Effect.provideService(LanguageModel.LanguageModel, provider.service),
            Effect.provideService(Budget, watched)
          )
        const message = (limits: BudgetedLanguageModel.Options["limits"]) =>
          Effect.map(Effect.flip(wrap(limits)), (error) => `${error._tag}: ${error.message}`)
        const per = "1 minute"
        const messages = [
          yield* message({ "gpt-5-mini": { rate: { tokens: 1.5, per } } }),
          yield* message({ "gpt-5-mini": { rate: { requests: 0, per } } }),
          yield* message({ "claude-*": { rate: { tokens: 10, per: "0 seconds" } } }),
          yield* message({ "claude-*": { rate: { tokens: 10, per, burst: -1 } } }),
          yield* message({ "gpt-5-mini": { rate: { per } } }),
          yield* message({ "gpt-5-mini": { maxConcurrent: 0 } }),
          // a good limit first: none is opened while one is bad
          yield* message({ "gpt-4o": { maxConcurrent: 8 }, "gpt-5-mini": {} }),
          yield* message({ "gpt-*-mini": { maxConcurrent: 8 } }),
          yield* message({ "": { maxConcurrent: 8 } }),
          yield* message({ "gpt-5-mini": 64 as never }),
          yield* message(["gpt-5-mini"] as never)
        ]
        const keys = "keys must be model names, or prefixes with \"*\" at their end only (\"claude-*\", or \"*\" for any model)"
        assert.deepStrictEqual(messages.map((m) => m.replace(/^InvalidUsage: Invalid /, "")), [
          "limits[\"gpt-5-mini\"].rate.tokens: must be a whole number of tokens, at least 1, or left out, got 1.5",
          "limits[\"gpt-5-mini\"].rate.requests: must be a whole number of requests, at least 1, or left out, got 0",
          "limits[\"claude-*\"].rate.per: must be a positive, finite Duration (\"1 day\", Duration.hours(6)), got \"0 seconds\" (a string)",
          "limits[\"claude-*\"].rate.burst: must be a positive number of periods (1, 0.5), got -1",
          "limits[\"gpt-5-mini\"].rate: must give tokens, requests or usd per period, got {\"per\":\"1 minute\"}",
          "limits[\"gpt-5-mini\"].maxConcurrent: must be a whole number of holds, at least 1, or left out for no limit, got 0",
          "limits[\"gpt-5-mini\"]: must give a rate, a maxConcurrent, or both, got {}",
          `limits: ${keys}, got "gpt-*-mini" (a string)`,
          `limits: ${keys}, got ""`,
          "limits[\"gpt-5-mini\"]: must be an object like { rate: { tokens: 2_000_000, per: \"1 minute\" }, maxConcurrent: 64 }, got 64",
          "limits: must map model names, or prefixes ending in \"*\", to limits, like { \"gpt-5-mini\": { rate: " +
          "{ tokens: 2_000_000, requests: 5_000, per: \"1 minute\" }, maxConcurrent: 64 } }, got [\"gpt-5-mini\"]"
        ])
        assert.isTrue(messages.every((m) => m.startsWith("InvalidUsage: Invalid ")))
        assert.deepStrictEqual(opened, [])
        // the same limits, good: opened once each, with the layer
        yield* wrap({ "gpt-4o": { maxConcurrent: 8 }, "gpt-5-mini": { maxConcurrent: 8 } })
        assert.deepStrictEqual(opened, ["model:gpt-4o", "model:gpt-5-mini"])
      }))
  })
})
