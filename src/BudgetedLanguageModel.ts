/**
 * Budgets around `effect/ai`'s `LanguageModel`: a layer that wraps the
 * `LanguageModel` in context so that every `generateText`, `generateObject`
 * and `streamText` call holds an estimate before it starts (see
 * `TokenEstimate`) and is settled with the usage the provider reports,
 * priced by a function of yours (see `Pricing`).
 *
 * @since 0.1.0
 */
import { Cause, Context, Effect, Exit, Layer, Option, Schema, Scope, Stream, Tracer } from "effect"
import { AiError, LanguageModel, Model, Prompt, Response, Telemetry, Tokenizer } from "effect/ai"
import { dual } from "effect/Function"
import { Budget } from "./Budget.ts"
import type { BudgetService, RateOptions, Reservation, Settlement } from "./Budget.ts"
import { BudgetExceeded, InvalidUsage } from "./BudgetError.ts"
import type { BudgetUnavailable } from "./BudgetError.ts"
import { labelsOf } from "./internal/labels.ts"
import { type LimitSetting, type Limits, limitsOf, refield } from "./internal/modelLimits.ts"
import type { Labels } from "./Ledger.ts"
import { priceUsage, usdError } from "./internal/pricing.ts"
import { reportFailure } from "./internal/report.ts"
import { reportedInput, reportedOutput, usageOf } from "./internal/responseUsage.ts"
import type { PriceFunction } from "./Pricing.ts"
import { defaultMaxOutputTokens, estimateInputTokens } from "./TokenEstimate.ts"

// --- models -----------------------------------------------------------------

/**
 * Options of `layer`. Every option has a default: with none, calls are held
 * and charged in tokens only.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * Prices a call: a `Pricing.PriceFunction`, or the checked one
   * `Pricing.perMillionTokens` builds. Left out, calls cost $0 and only
   * tokens are counted.
   */
  readonly price?: PriceFunction | Effect.Effect<PriceFunction, InvalidUsage> | undefined
  /**
   * Output tokens held for a call that sets none with `withCallOptions`: set
   * it to the output limit you give your provider. Defaults to 4096.
   */
  readonly maxOutputTokens?: number | undefined
  /** Fail a call that does not fit at once (the default), or wait until it fits. */
  readonly onExceeded?: "fail" | "wait" | undefined
  /**
   * What a call that fails, is interrupted, or (a stream) stops before the
   * provider reported its usage is charged: its estimate (the default: the
   * provider may have billed it), or nothing (`"release"`). A call whose usage
   * was reported is charged that usage however it ends, and one the provider
   * refused with an error before answering (a rate limit, say) is charged
   * nothing, whatever this says.
   */
  readonly onFailure?: "chargeEstimate" | "release" | undefined
  /**
   * The model's name for pricing and `limits` when `Model.ModelName` gives
   * none (pricing also reads the name the response gives).
   */
  readonly model?: string | undefined
  /**
   * Rate and concurrency limits per model, such as a provider tier's TPM and
   * RPM: `{ "gpt-5-mini": { rate: { tokens: 2_000_000, requests: 5_000, per: "1 minute" } } }`.
   * A key is a model name, matched exactly, or a prefix ending in `"*"`
   * (`"claude-*"`; `"*"` alone is any model, an unnamed one included). A
   * call takes the limit of its model's exact name, else of the longest
   * prefix it starts with; a model that matches none is not limited. Each
   * key's limit is a child budget, `model:<key>`, of the budget the call is
   * charged to, so its rate and concurrency are checked with that budget's
   * caps in one step: a call that does not fit waits (with `onExceeded:
   * "wait"`) or fails with `limit: "rate"` instead of meeting the provider's
   * 429. The models a prefix matches share its limit. See docs/ai.md,
   * "Provider rate limits".
   */
  readonly limits?: Readonly<Record<string, ModelLimit>> | undefined
}

/**
 * The limits of one model, or of every model a prefix key matches, in
 * `Options.limits`: a `rate` (`Budget`'s `RateOptions`: tokens, requests
 * and dollars per period, as token buckets), a `maxConcurrent` (calls in
 * flight at once), or both.
 *
 * @example
 * ```ts
 * import type { BudgetedLanguageModel } from "effect-token-budget"
 *
 * // a provider tier: 2M tokens and 5,000 requests a minute, 64 calls at once
 * const tier: BudgetedLanguageModel.ModelLimit = {
 *   rate: { tokens: 2_000_000, requests: 5_000, per: "1 minute" },
 *   maxConcurrent: 64
 * }
 * ```
 *
 * @since 0.3.0
 * @category models
 */
export interface ModelLimit {
  readonly rate?: RateOptions | undefined
  readonly maxConcurrent?: number | undefined
}

/**
 * What one call may say about its own hold, set with `withCallOptions`.
 * Whatever is left out comes from the layer's options or the estimate.
 *
 * @since 0.1.0
 * @category models
 */
export interface CallOptions {
  /** Input tokens to hold instead of counting the prompt. */
  readonly inputTokens?: number | undefined
  /** Output tokens to hold: the output limit this call gives the provider. */
  readonly maxOutputTokens?: number | undefined
  /** Dollars to hold instead of pricing the estimate. */
  readonly usd?: number | undefined
  /** Fail at once when the hold does not fit, or wait until it does. */
  readonly onExceeded?: "fail" | "wait" | undefined
  /** Charge the estimate, or nothing, if the call ends before its usage is reported (see `Options`). */
  readonly onFailure?: "chargeEstimate" | "release" | undefined
  /**
   * Labels of the call's charge (user, feature, request id...), beside the
   * `model` and `provider` labels every call gets (a `model` or `provider`
   * given here wins);
   * nested `withCallOptions` add to the labels around them.
   */
  readonly labels?: Labels | undefined
}

/**
 * The `CallOptions` in effect for the calls of the current fiber; empty by
 * default. Set it with `withCallOptions`, which checks the values first.
 *
 * @since 0.1.0
 * @category services
 */
export const CurrentCallOptions: Context.Reference<CallOptions> = Context.Reference<CallOptions>(
  "effect-token-budget/BudgetedLanguageModel/CurrentCallOptions",
  { defaultValue: () => ({}) }
)

// --- layers -----------------------------------------------------------------

/**
 * Wraps the `LanguageModel` in context so that every call is held against a
 * budget before it starts and settled with the usage the provider reports.
 * Calling code does not change: `generateText`, `generateObject` and
 * `streamText` keep their types.
 *
 * A call is charged to the `Budget` in the caller's context when there is
 * one (so `Budget.layerChild` around an agent charges that agent), else to
 * the `Budget` the layer was built with. A refusal fails the call with an
 * `AiError` whose reason is a `QuotaExhaustedError` carrying the
 * `BudgetExceeded`: `unwrapBudgetExceeded` turns it back into one.
 *
 * A call that fails once the provider may have billed it is charged all the
 * same: the usage the provider reported when the wrapper saw it, else the
 * estimate (or nothing, as `onFailure` says); one the provider refused with
 * an error before answering is charged nothing (see docs/ai.md, "Failed
 * calls").
 *
 * With `limits`, a call for a limited model is held on its model's child
 * budget (`team/model:gpt-5-mini`), which the layer opens below its own
 * `Budget` and keeps while the layer lasts; a call charged to a budget of
 * the caller's own opens that budget's child for the call. The layer fails
 * with `InvalidUsage` when a limit is not usable.
 *
 * @example
 * ```ts
 * import { Budget, BudgetedLanguageModel, Pricing } from "effect-token-budget"
 * import { Effect, Layer, Stream } from "effect"
 * import { LanguageModel } from "effect/ai"
 *
 * // any provider's layer: OpenAiLanguageModel.model("gpt-5-mini"), say
 * const Provider = Layer.effect(LanguageModel.LanguageModel, LanguageModel.make({
 *   generateText: () => Effect.succeed([{ type: "text", text: "Hi!" }]),
 *   streamText: () => Stream.empty
 * }))
 *
 * const Model = BudgetedLanguageModel.layer({
 *   price: Pricing.perMillionTokens({ "*": { input: 0.25, output: 2 } }),
 *   maxOutputTokens: 1000
 * }).pipe(Layer.provide(Provider), Layer.provide(Budget.layer({ usdCap: 5 })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<LanguageModel.LanguageModel, InvalidUsage | BudgetUnavailable, LanguageModel.LanguageModel | Budget> =>
  Layer.effect(LanguageModel.LanguageModel, make(options))

/**
 * Makes the wrapped `LanguageModel` service from the `LanguageModel` and
 * `Budget` in context, for as long as the scope lasts (which keeps the
 * children of `limits` open); `layer` provides it.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = Effect.fnUntraced(function*(
  options: Options
): Effect.fn.Return<
  LanguageModel.LanguageModel,
  InvalidUsage | BudgetUnavailable,
  LanguageModel.LanguageModel | Budget | Scope.Scope
> {
  const settings = yield* settingsOf(options)
  const inner = yield* LanguageModel.LanguageModel
  const budget = yield* Budget
  // Every limit's child of the layer's budget, opened once: its buckets
  // outlive any one call.
  const modelBudgets = new Map<string, BudgetService>()
  for (const limit of settings.limits.all) {
    modelBudgets.set(limit.key, yield* openLimit(budget, limit))
  }
  const context: LayerContext = {
    budget,
    modelBudgets,
    tokenizer: Option.getOrUndefined(yield* Effect.serviceOption(Tokenizer.Tokenizer)),
    model: Option.getOrUndefined(yield* Effect.serviceOption(Model.ModelName)) ?? settings.model,
    provider: Option.getOrUndefined(yield* Effect.serviceOption(Model.ProviderName)),
    spanTransformer: Option.getOrUndefined(yield* Effect.serviceOption(Telemetry.CurrentSpanTransformer))
  }
  const wrap = wrapper(settings, context)
  // The inner methods, as the wrapper sees them: taking any options with a
  // prompt, and returning a response or parts it reads the usage of.
  const generateText: (options: AnyCallOptions) => Effect.Effect<GenerateResponse, unknown, unknown> =
    inner.generateText
  const generateObject: (options: AnyCallOptions & ObjectOptions) => Effect.Effect<GenerateResponse, unknown, unknown> =
    inner.generateObject
  const streamText: (options: AnyCallOptions) => Stream.Stream<Response.AnyPart, unknown, unknown> = inner.streamText
  const service: LanguageModel.LanguageModel = {
    [LanguageModel.TypeId]: LanguageModel.TypeId,
    supportsSystemMessagesInHistory: inner.supportsSystemMessagesInHistory,
    // `LanguageModel`'s methods are overloads generic over their options, as
    // `LanguageModel.make` builds them, which no wrapper can restate. Each
    // wrapper passes the options on (the prompt decoded) and returns what the
    // inner method returns, its errors widened by `AiError` only, which every
    // overload's errors include: the inner method's type is the wrapper's, as
    // these casts say.
    generateText: ((options: AnyCallOptions) =>
      wrap.generate("generateText", options, generateText)) as LanguageModel.LanguageModel["generateText"],
    generateObject: ((options: AnyCallOptions & ObjectOptions) =>
      wrap.generate("generateObject", options, generateObject)) as LanguageModel.LanguageModel["generateObject"],
    streamText: ((options: AnyCallOptions) =>
      wrap.stream(options, streamText)) as LanguageModel.LanguageModel["streamText"]
  }
  return service
})

// --- combinators ------------------------------------------------------------

/**
 * Sets `CallOptions` for every budgeted call `self` makes, over the ones set
 * around it. Fails with `InvalidUsage`, before running `self`, when an option
 * is not a usable value.
 *
 * @example
 * ```ts
 * import { BudgetedLanguageModel } from "effect-token-budget"
 * import { LanguageModel } from "effect/ai"
 *
 * const longAnswer = LanguageModel.generateText({ prompt: "Write the report" }).pipe(
 *   BudgetedLanguageModel.withCallOptions({ maxOutputTokens: 8000, onExceeded: "wait" })
 * )
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const withCallOptions: {
  (options: CallOptions): <A, E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<A, E | InvalidUsage, R>
  <A, E, R>(self: Effect.Effect<A, E, R>, options: CallOptions): Effect.Effect<A, E | InvalidUsage, R>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, options: CallOptions): Effect.Effect<A, E | InvalidUsage, R> =>
  Effect.suspend((): Effect.Effect<A, E | InvalidUsage, R> => {
    const invalid = callOptionsError(options)
    if (invalid !== undefined) return Effect.fail(invalid)
    const set = definedOnly(options)
    return Effect.updateService(self, CurrentCallOptions, (current) =>
      current.labels === undefined || set.labels === undefined
        ? { ...current, ...set }
        : { ...current, ...set, labels: { ...current.labels, ...set.labels } })
  }))

/**
 * The `BudgetExceeded` behind a budgeted call's refusal, or `undefined` for
 * any other error. Reads the refusal's metadata, so it also works on an
 * `AiError` that was encoded and decoded.
 *
 * @since 0.1.0
 * @category errors
 */
export const budgetExceededOf = (error: unknown): BudgetExceeded | undefined =>
  AiError.isAiError(error) && error.reason._tag === "QuotaExhaustedError"
    ? exceededOfMetadata(error.reason.metadata)
    : undefined

// As JSON, which an `AiError`'s metadata must be: a rate refusal's
// `retryAfter` is a `Duration`, which only the JSON codec encodes as JSON.
const exceededJson = Schema.toCodecJson(BudgetExceeded)
const decodeExceeded = Schema.decodeUnknownOption(exceededJson)
const encodeExceeded = Schema.encodeSync(exceededJson)

const exceededOfMetadata = (metadata: AiError.ProviderMetadata): BudgetExceeded | undefined =>
  Option.getOrUndefined(decodeExceeded(metadata[metadataKey]))

/**
 * Fails with the `BudgetExceeded` itself where `self` fails with a budgeted
 * call's refusal, so refusals can be handled with
 * `Effect.catchTag("BudgetExceeded", ...)`. Every other error is unchanged.
 *
 * @example
 * ```ts
 * import { BudgetedLanguageModel } from "effect-token-budget"
 * import { Effect } from "effect"
 * import { LanguageModel } from "effect/ai"
 *
 * const answer = LanguageModel.generateText({ prompt: "Summarize the ticket" }).pipe(
 *   BudgetedLanguageModel.unwrapBudgetExceeded,
 *   Effect.map((response) => response.text),
 *   Effect.catchTag("BudgetExceeded", (e) => Effect.succeed(`(skipped: ${e.message})`))
 * )
 * ```
 *
 * @since 0.1.0
 * @category combinators
 */
export const unwrapBudgetExceeded = <A, E, R>(self: Effect.Effect<A, E, R>): Effect.Effect<A, E | BudgetExceeded, R> =>
  Effect.catchIf(self, (error) => budgetExceededOf(error) !== undefined, (error) =>
    Effect.fail(budgetExceededOf(error)!))

// --- validation -------------------------------------------------------------

interface Settings {
  readonly price: PriceFunction | undefined
  readonly maxOutputTokens: number
  readonly onExceeded: "fail" | "wait"
  readonly onFailure: "chargeEstimate" | "release"
  readonly model: string | undefined
  readonly limits: Limits
}

const tokensError = (field: string, value: unknown): InvalidUsage | undefined =>
  value === undefined || (Number.isSafeInteger(value) && (value as number) >= 0)
    ? undefined
    : new InvalidUsage({ field, value, reason: "must be a whole number of tokens, 0 or more" })

const onExceededError = (field: string, value: unknown): InvalidUsage | undefined =>
  value === undefined || value === "fail" || value === "wait"
    ? undefined
    : new InvalidUsage({ field, value, reason: "must be \"fail\" or \"wait\"" })

const onFailureError = (field: string, value: unknown): InvalidUsage | undefined =>
  value === undefined || value === "chargeEstimate" || value === "release"
    ? undefined
    : new InvalidUsage({ field, value, reason: "must be \"chargeEstimate\" or \"release\"" })

const settingsOf = Effect.fnUntraced(function*(options: Options) {
  const invalid = tokensError("maxOutputTokens", options.maxOutputTokens) ??
    onExceededError("onExceeded", options.onExceeded) ??
    onFailureError("onFailure", options.onFailure) ??
    (options.model === undefined || (typeof options.model === "string" && options.model.length > 0)
      ? undefined
      : new InvalidUsage({ field: "model", value: options.model, reason: "must be a non-empty model name" }))
  if (invalid !== undefined) return yield* invalid
  const limits = limitsOf(options.limits)
  if (limits instanceof InvalidUsage) return yield* limits
  const price = options.price
  let priceFunction: PriceFunction | undefined
  if (price === undefined || typeof price === "function") {
    priceFunction = price
  } else if (Effect.isEffect(price)) {
    priceFunction = yield* price
  } else {
    return yield* new InvalidUsage({
      field: "price",
      value: price,
      reason: "must be a function (usage, model) => usd, or Pricing.perMillionTokens({...})"
    })
  }
  return {
    price: priceFunction,
    maxOutputTokens: options.maxOutputTokens ?? defaultMaxOutputTokens,
    onExceeded: options.onExceeded ?? "fail",
    onFailure: options.onFailure ?? "chargeEstimate",
    model: options.model,
    limits
  } satisfies Settings
})

/**
 * The child of `budget` that keeps `limit`, for as long as the scope lasts;
 * a store's refusal of its options names the limit's field.
 */
const openLimit = (
  budget: BudgetService,
  limit: LimitSetting
): Effect.Effect<BudgetService, InvalidUsage | BudgetUnavailable, Scope.Scope> =>
  budget.child(limit.name, limit.options).pipe(
    Effect.catchTag("InvalidUsage", (error) => Effect.fail(refield(error, limit.field)))
  )

const callOptionsError = (options: CallOptions): InvalidUsage | undefined =>
  options === null || typeof options !== "object"
    ? new InvalidUsage({
      field: "call options",
      value: options,
      reason: "expected an object like { maxOutputTokens, inputTokens, usd, onExceeded, onFailure }"
    })
    : tokensError("inputTokens", options.inputTokens) ?? tokensError("maxOutputTokens", options.maxOutputTokens) ??
      usdError("usd", options.usd) ?? onExceededError("onExceeded", options.onExceeded) ??
      onFailureError("onFailure", options.onFailure) ?? labelsError(options.labels)

const labelsError = (labels: unknown): InvalidUsage | undefined => {
  const checked = labelsOf(labels)
  return checked instanceof InvalidUsage ? checked : undefined
}

const definedOnly = (options: CallOptions): CallOptions =>
  Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined))

// --- the response -----------------------------------------------------------

const modelIdOf = (parts: ReadonlyArray<Response.AnyPart>): string | undefined => {
  for (const part of parts) {
    if (part.type === "response-metadata" && part.modelId !== undefined) return part.modelId
  }
  return undefined
}

/** The usage of a response's finish part, if it reports any. */
const reportedUsageOf = (parts: ReadonlyArray<Response.AnyPart>): Response.Usage | undefined => {
  for (const part of parts) {
    if (part.type === "finish") {
      return reportedInput(part.usage) !== undefined || reportedOutput(part.usage) !== undefined ? part.usage : undefined
    }
  }
  return undefined
}

// The reasons a provider fails a request with instead of answering it: the
// request was refused or never reached it, so it was most likely not billed.
// Every other failure (output that does not decode, a tool that fails, an
// unknown error) may come after an answer the provider billed.
const refusals: ReadonlySet<AiError.AiErrorReason["_tag"]> = new Set([
  "RateLimitError",
  "QuotaExhaustedError",
  "AuthenticationError",
  "ContentPolicyError",
  "InvalidRequestError",
  "InternalProviderError",
  "NetworkError",
  "UnsupportedSchemaError",
  "ToolConfigurationError",
  "ToolkitRequiredError",
  "InvalidUserInputError"
])

/** Whether `cause` is the provider's refusal of the request, before any answer. */
const isRefusal = (cause: Cause.Cause<unknown>): boolean => {
  const error = Option.getOrUndefined(Cause.findErrorOption(cause))
  return AiError.isAiError(error) && refusals.has(error.reason._tag)
}

// --- the wrapper ------------------------------------------------------------

/** The options every `LanguageModel` method takes; the rest passes through. */
interface AnyCallOptions {
  readonly prompt: Prompt.RawInput
}

/** What `generateObject` takes besides: the schema of its object. */
interface ObjectOptions {
  readonly schema: Schema.Codec<Record<string, unknown>, Record<string, unknown>>
}

/** What the wrapper reads of a `generateText` or `generateObject` response. */
interface GenerateResponse {
  readonly usage: Response.Usage
  readonly content: ReadonlyArray<Response.AnyPart>
}

type Method = "generateText" | "generateObject" | "streamText"

/** What the layer found in context when it was built: the defaults of every call. */
interface LayerContext {
  readonly budget: BudgetService
  /** The child of `budget` that keeps each limit, by the limit's key. */
  readonly modelBudgets: ReadonlyMap<string, BudgetService>
  readonly tokenizer: Tokenizer.Service | undefined
  readonly model: string | undefined
  readonly provider: string | undefined
  readonly spanTransformer: Telemetry.SpanTransformer | undefined
}

/** One call, prepared: where it is charged and what it holds. */
interface PreparedCall {
  readonly method: Method
  /** The budget that pays: the caller's, else the layer's. */
  readonly budget: BudgetService
  /** The limit of the call's model, if it has one: then it is held on that limit's child of `budget`. */
  readonly limit: LimitSetting | undefined
  /** Where it is held: `budget`'s path, or its model child's. */
  readonly path: string
  readonly prompt: Prompt.Prompt
  readonly inputTokens: number
  readonly outputTokens: number
  readonly tokens: number
  readonly usd: number
  readonly model: string | undefined
  /** Its charge's labels: its model and provider, and the caller's. */
  readonly labels: Labels
  readonly onExceeded: "fail" | "wait"
  readonly onFailure: "chargeEstimate" | "release"
  /** The span of the call, when traced: settlement is written on it. */
  readonly span: Tracer.Span | undefined
}

// A refused call fails with an `AiError`, the only error `LanguageModel`'s
// types allow. Its reason, quota exhausted, is what a budget refusal means;
// this subclass only gives it the budget's own message.
class BudgetQuotaExhausted extends AiError.QuotaExhaustedError {
  override get message(): string {
    return exceededOfMetadata(this.metadata)?.message ?? super.message
  }
}

const metadataKey = "effect-token-budget"

const refusalOf = (method: Method, error: BudgetExceeded): AiError.AiError =>
  AiError.make({
    module: "BudgetedLanguageModel",
    method,
    // Kept encoded (plain JSON) in the reason's metadata, as its schema asks.
    reason: new BudgetQuotaExhausted({ metadata: { [metadataKey]: encodeExceeded(error) } })
  })

const unavailableOf = (method: Method, error: BudgetUnavailable): AiError.AiError =>
  AiError.make({
    module: "BudgetedLanguageModel",
    method,
    reason: new AiError.UnknownError({
      description: error.message,
      metadata: { [metadataKey]: { _tag: "BudgetUnavailable", budget: error.budget } }
    })
  })

/** A budget's failure to hold, as the `AiError` a `LanguageModel` call may fail with. */
const holdFailure = (method: Method) =>
(
  error: BudgetExceeded | InvalidUsage | BudgetUnavailable
): Effect.Effect<never, AiError.AiError> => {
  switch (error._tag) {
    case "BudgetExceeded":
      return Effect.fail(refusalOf(method, error))
    case "BudgetUnavailable":
      return Effect.fail(unavailableOf(method, error))
    case "InvalidUsage":
      // Every amount and limit was checked before: this is a bug, or a
      // caller's budget in a store that does not keep rates (its message
      // names the limit), not an outcome.
      return Effect.die(error)
  }
}

const fmtUsd = (usd: number) => `$${usd}`

const wrapper = (settings: Settings, layerContext: LayerContext) => {
  const countInputTokens = Effect.fnUntraced(function*(prompt: Prompt.Prompt) {
    const tokenizer = Option.getOrUndefined(yield* Effect.serviceOption(Tokenizer.Tokenizer)) ??
      layerContext.tokenizer
    if (tokenizer === undefined) return estimateInputTokens(prompt)
    return yield* tokenizer.tokenize(prompt).pipe(
      Effect.map((tokens) => tokens.length),
      Effect.catch((error) =>
        Effect.as(
          Effect.logWarning(`Tokenizer failed, so the prompt was estimated from its length: ${error.message}`),
          estimateInputTokens(prompt)
        )
      )
    )
  })

  const prepare = Effect.fnUntraced(function*(method: Method, rawPrompt: Prompt.RawInput) {
    const callOptions = yield* CurrentCallOptions
    const budget = Option.getOrUndefined(yield* Effect.serviceOption(Budget)) ?? layerContext.budget
    // Decoded once here and passed on, so an iterable prompt is read once.
    const prompt = Prompt.make(rawPrompt)
    const inputTokens = callOptions.inputTokens ?? (yield* countInputTokens(prompt))
    const outputTokens = callOptions.maxOutputTokens ?? settings.maxOutputTokens
    const model = Option.getOrUndefined(yield* Effect.serviceOption(Model.ModelName)) ?? layerContext.model
    // A price function that fails on the estimate is a bug in it: a defect.
    const usd = callOptions.usd ??
      (yield* Effect.orDie(priceUsage(settings.price, usageOf(inputTokens, outputTokens), model)))
    const provider = Option.getOrUndefined(yield* Effect.serviceOption(Model.ProviderName)) ?? layerContext.provider
    const labels: Record<string, string> = {}
    if (model !== undefined) labels["model"] = model
    if (provider !== undefined) labels["provider"] = provider
    const limit = settings.limits.lookup(model)
    const path = limit === undefined ? budget.path : `${budget.path}/${limit.name}`
    const span = yield* Effect.withFiber((fiber) => {
      const parent = Context.getOrUndefined(fiber.context, Tracer.ParentSpan)
      return Effect.succeed(parent !== undefined && parent._tag === "Span" ? parent : undefined)
    })
    span?.attribute("budget.path", path)
    span?.attribute("budget.estimate.tokens", inputTokens + outputTokens)
    span?.attribute("budget.estimate.usd", usd)
    return {
      method,
      budget,
      limit,
      path,
      prompt,
      inputTokens,
      outputTokens,
      tokens: inputTokens + outputTokens,
      usd,
      model,
      labels: { ...labels, ...callOptions.labels },
      onExceeded: callOptions.onExceeded ?? settings.onExceeded,
      onFailure: callOptions.onFailure ?? settings.onFailure,
      span
    } satisfies PreparedCall
  })

  /**
   * The budget a call is held on: the one that pays, or its child that keeps
   * the limit of the call's model. The layer's budget has its children
   * open; a budget of the caller's own opens its child for the call (the
   * same name, the same counters, while the child is kept).
   */
  const heldOn = (call: PreparedCall): Effect.Effect<BudgetService, InvalidUsage | BudgetUnavailable, Scope.Scope> => {
    const limit = call.limit
    if (limit === undefined) return Effect.succeed(call.budget)
    const opened = call.budget === layerContext.budget ? layerContext.modelBudgets.get(limit.key) : undefined
    return opened === undefined ? openLimit(call.budget, limit) : Effect.succeed(opened)
  }

  const hold = (call: PreparedCall) =>
    Effect.flatMap(heldOn(call), (budget) =>
      budget.reserve({ tokens: call.tokens, usd: call.usd }, { onExceeded: call.onExceeded, labels: call.labels })).pipe(
        Effect.catch(holdFailure(call.method))
      )

  const logged = <A>(effect: Effect.Effect<A>, call: PreparedCall, model: string | undefined) =>
    Effect.annotateLogs(effect, {
      "budget.path": call.path,
      "budget.method": call.method,
      "budget.model": model ?? "unknown"
    })

  const reportOverage = (call: PreparedCall, settled: Settlement) =>
    settled.tokensOverage > 0 || settled.usdOverage > 0
      ? Effect.logWarning(
        `LanguageModel.${call.method} used ${settled.tokens} tokens / ${fmtUsd(settled.usd)}, more than the ` +
          `${call.tokens} tokens / ${fmtUsd(call.usd)} held, and took budget "${call.budget.path}" past its cap ` +
          `by ${settled.tokensOverage} tokens / ${fmtUsd(settled.usdOverage)} (charged: that usage happened)`
      )
      : Effect.void

  /**
   * Settles `reservation` with what the provider reported. No usage at all
   * commits the estimate, and says so; a side (input or output) left out is
   * charged at its estimate.
   */
  const settle = (
    call: PreparedCall,
    reservation: Reservation,
    usage: Response.Usage | undefined,
    modelId: string | undefined
  ): Effect.Effect<void> =>
    Effect.gen(function*() {
      const model = modelId ?? call.model
      const input = usage === undefined ? undefined : reportedInput(usage)
      const output = usage === undefined ? undefined : reportedOutput(usage)
      call.span?.attribute("budget.usage_reported", input !== undefined || output !== undefined)
      if (input === undefined && output === undefined) {
        return yield* chargeEstimate(call, reservation, "reported no usage")
      }
      const complete = input !== undefined && output !== undefined ? usage! : new Response.Usage({
        inputTokens: input === undefined ? { uncached: call.inputTokens, total: call.inputTokens } : usage!.inputTokens,
        outputTokens: output === undefined ? { total: call.outputTokens, text: call.outputTokens } : usage!.outputTokens
      })
      const usd = yield* priceUsage(settings.price, complete, model).pipe(
        Effect.catch((error) =>
          Effect.as(
            Effect.logError(`${error.message}; charged the estimate of ${fmtUsd(call.usd)} instead`),
            call.usd
          )
        )
      )
      const tokens = (input ?? call.inputTokens) + (output ?? call.outputTokens)
      const settled = yield* reservation.commit({ tokens, usd })
      call.span?.attribute("budget.tokens", settled.tokens)
      call.span?.attribute("budget.usd", settled.usd)
      yield* reportOverage(call, settled)
    }).pipe(
      // The call keeps its answer or its own error: the provider's work is done.
      reportFailure(`LanguageModel.${call.method} could not be charged to budget "${call.path}"`),
      (effect) => logged(effect, call, modelId ?? call.model)
    )

  /** Commits the estimate of a call whose usage is unknown, and says why. */
  const chargeEstimate = Effect.fnUntraced(function*(call: PreparedCall, reservation: Reservation, why: string) {
    const settled = yield* reservation.commit()
    call.span?.event("budget.usage_missing", yield* Effect.clockWith((clock) => clock.currentTimeNanos), {
      "budget.tokens": settled.tokens,
      "budget.usd": settled.usd
    })
    yield* Effect.logWarning(
      `LanguageModel.${call.method} ${why}: charged its estimate of ${settled.tokens} tokens / ` +
        `${fmtUsd(settled.usd)} to budget "${call.path}"`
    )
    yield* reportOverage(call, settled)
  })

  /**
   * Settles a call that ended without reported usage: a provider's refusal
   * before any answer gives the hold back; else the call's `onFailure`
   * decides between its estimate and nothing.
   */
  const settleUnreported = (
    call: PreparedCall,
    reservation: Reservation,
    ended: "refused" | "failed" | "interrupted" | "stopped",
    modelId: string | undefined
  ): Effect.Effect<void> => {
    const how = ended === "refused"
      ? "was refused by the provider before any answer"
      : ended === "failed"
      ? "failed without reporting usage"
      : ended === "interrupted"
      ? "was interrupted before reporting usage"
      : "stopped before reporting usage"
    call.span?.attribute("budget.usage_reported", false)
    const settled = ended !== "refused" && call.onFailure === "chargeEstimate"
      ? chargeEstimate(call, reservation, how).pipe(
        reportFailure(`LanguageModel.${call.method} could not be charged to budget "${call.path}"`)
      )
      : Effect.andThen(
        reservation.release,
        Effect.logDebug(`LanguageModel.${call.method} ${how}: hold released`)
      ).pipe(
        reportFailure(`LanguageModel.${call.method} could not give its hold back to budget "${call.path}"`)
      )
    return logged(settled, call, modelId ?? call.model)
  }

  /**
   * Runs `effect` (a `generateObject`) with a span transformer that hands
   * `seen` the response. `LanguageModel` calls the transformer once the
   * provider's answer is decoded, before it decodes the object: so a call
   * whose object does not decode is still charged the usage in its answer.
   * The transformer that would have run (the caller's, else the one in
   * context where this layer was built) is called in turn.
   */
  const seeingAnswer = <A, E, R>(
    effect: Effect.Effect<A, E, R>,
    seen: (response: ReadonlyArray<Response.AnyPart>) => void
  ): Effect.Effect<A, E, R> =>
    Effect.flatMap(Effect.serviceOption(Telemetry.CurrentSpanTransformer), (current) => {
      const next = Option.getOrUndefined(current) ?? layerContext.spanTransformer
      return Effect.provideService(effect, Telemetry.CurrentSpanTransformer, (options) => {
        seen(options.response)
        next?.(options)
      })
    })

  const generate = <O extends AnyCallOptions, A extends GenerateResponse, E, R>(
    method: "generateText" | "generateObject",
    callOptions: O,
    run: (forwarded: O) => Effect.Effect<A, E, R>
  ): Effect.Effect<A, E | AiError.AiError, R> =>
    Effect.gen(function*() {
      const call = yield* prepare(method, callOptions.prompt)
      let answer: ReadonlyArray<Response.AnyPart> | undefined
      const request = run({ ...callOptions, prompt: call.prompt })
      const observed = method === "generateObject"
        ? seeingAnswer(request, (response) => {
          answer = response
        })
        : request
      const settleFailure = (reservation: Reservation, cause: Cause.Cause<E>) => {
        const usage = answer === undefined ? undefined : reportedUsageOf(answer)
        const modelId = answer === undefined ? undefined : modelIdOf(answer)
        if (usage !== undefined) return settle(call, reservation, usage, modelId)
        const ended = answer === undefined && isRefusal(cause)
          ? "refused"
          : Cause.hasInterruptsOnly(cause)
          ? "interrupted"
          : "failed"
        return settleUnreported(call, reservation, ended, modelId)
      }
      // The scope holds the reservation only: the call itself sees the
      // caller's scope, if any, not this one.
      return yield* Effect.scopedWith((scope) =>
        Effect.flatMap(Scope.provide(hold(call), scope), (reservation) =>
          // Settled however the call ends, before the hold's scope closes,
          // and uninterruptibly: once the provider may have billed, the call
          // is charged even if this fiber is interrupted.
          Effect.onExit(observed, (exit) =>
            Exit.isSuccess(exit)
              ? settle(call, reservation, exit.value.usage, modelIdOf(exit.value.content))
              : settleFailure(reservation, exit.cause)))
      )
    }).pipe(Effect.withSpan(`BudgetedLanguageModel.${method}`))

  const stream = <A extends Response.AnyPart, E, R>(
    callOptions: AnyCallOptions,
    run: (forwarded: AnyCallOptions) => Stream.Stream<A, E, R>
  ): Stream.Stream<A, E | AiError.AiError, R> =>
    Stream.unwrap(Effect.gen(function*() {
      const call = yield* prepare("streamText", callOptions.prompt)
      // Held for the life of the stream: `Stream.unwrap` closes this scope
      // when the stream ends, fails, or its consumer stops reading.
      const reservation = yield* hold(call)
      let usage: Response.Usage | undefined
      let modelId: string | undefined
      let answered = false
      let refused = false
      let ended = false
      yield* Effect.addFinalizer(() => {
        // Reported usage is charged however the stream ended; a stream that
        // ended without any charges its estimate; one cut before its finish
        // part (failed, interrupted, or no longer read) is settled by its
        // `onFailure`, and one the provider refused before sending anything
        // gives the hold back (see docs/ai.md).
        if (usage !== undefined || ended) return settle(call, reservation, usage, modelId)
        return settleUnreported(call, reservation, refused ? "refused" : "stopped", modelId)
      })
      return run({ ...callOptions, prompt: call.prompt }).pipe(
        Stream.mapArray((parts) => {
          answered = true
          for (const part of parts) {
            if (part.type === "finish" && usage === undefined) usage = part.usage
            else if (part.type === "response-metadata" && modelId === undefined) modelId = part.modelId
          }
          return parts
        }),
        Stream.onError((cause) =>
          Effect.sync(() => {
            refused = !answered && isRefusal(cause)
          })
        ),
        Stream.onEnd(Effect.sync(() => {
          ended = true
        }))
      )
    })).pipe(Stream.withSpan("BudgetedLanguageModel.streamText"))

  return { generate, stream }
}
