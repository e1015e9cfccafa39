/**
 * A scripted `LanguageModel` for tests: no network, every answer decided by
 * the test, every call counted.
 */
import { Effect, Layer, Stream } from "effect"
import { AiError, LanguageModel, Prompt, Response } from "effect/ai"

/** Usage as a provider reports it (`Response.Usage`, encoded). */
export type ReportedUsage = typeof Response.Usage.Encoded

/** What the provider does with one call. */
export interface Reply {
  /** Answer text; JSON for `generateObject`. */
  readonly text?: string | undefined
  /** Reported in a finish part; left out, the response has no finish part. */
  readonly usage?: ReportedUsage | undefined
  /** Names the model in a response-metadata part. */
  readonly modelId?: string | undefined
  /** Tool calls the model asks for. */
  readonly toolCalls?: ReadonlyArray<{ readonly id: string; readonly name: string; readonly params: unknown }> | undefined
  /** Fails the call (a stream: after its first delta) with a provider error. */
  readonly fail?: boolean | undefined
  /** Refuses the call with a provider error before answering anything (a stream: before its first part). */
  readonly refuse?: boolean | undefined
  /** A stream stops after its first delta and never ends. */
  readonly hang?: boolean | undefined
  /** Runs before the provider answers (a stream: before its first part). */
  readonly before?: Effect.Effect<void, unknown> | undefined
}

export interface ScriptedModel {
  readonly service: LanguageModel.LanguageModel
  readonly layer: Layer.Layer<LanguageModel.LanguageModel>
  /** Calls that reached the provider. */
  readonly calls: () => number
  /** The prompts the provider received, in order. */
  readonly prompts: ReadonlyArray<Prompt.Prompt>
}

export const usage = (
  input: { uncached?: number; total?: number; cacheRead?: number; cacheWrite?: number },
  output: { total?: number; text?: number; reasoning?: number }
): ReportedUsage => ({ inputTokens: input, outputTokens: output })

const providerError = AiError.make({
  module: "Scripted",
  method: "call",
  reason: new AiError.InternalProviderError({ description: "scripted failure" })
})

const generateParts = (reply: Reply): Array<Response.PartEncoded> => [
  ...(reply.modelId === undefined ? [] : [{ type: "response-metadata" as const, modelId: reply.modelId }]),
  ...(reply.text === undefined ? [] : [{ type: "text" as const, text: reply.text }]),
  ...(reply.toolCalls ?? []).map((call) => ({ type: "tool-call" as const, ...call, providerExecuted: false })),
  ...(reply.usage === undefined ? [] : [{ type: "finish" as const, reason: "stop" as const, usage: reply.usage }])
]

const streamParts = (reply: Reply): Stream.Stream<Response.StreamPartEncoded, AiError.AiError> => {
  const words = (reply.text ?? "").split(" ")
  const head: Array<Response.StreamPartEncoded> = [
    ...(reply.modelId === undefined ? [] : [{ type: "response-metadata" as const, modelId: reply.modelId }]),
    { type: "text-start", id: "t" },
    { type: "text-delta", id: "t", delta: words[0] ?? "" }
  ]
  if (reply.refuse === true) return Stream.fail(providerError)
  if (reply.fail === true) return Stream.concat(Stream.fromIterable(head), Stream.fail(providerError))
  if (reply.hang === true) return Stream.concat(Stream.fromIterable(head), Stream.never)
  return Stream.fromIterable<Response.StreamPartEncoded>([
    ...head,
    ...words.slice(1).map((word) => ({ type: "text-delta" as const, id: "t", delta: ` ${word}` })),
    { type: "text-end", id: "t" },
    ...(reply.usage === undefined ? [] : [{ type: "finish" as const, reason: "stop" as const, usage: reply.usage }])
  ])
}

/** A provider answering each call with `script(prompt, n)`, n counting from 1. */
export const scriptedModel = (script: (prompt: Prompt.Prompt, call: number) => Reply): Effect.Effect<ScriptedModel> =>
  Effect.gen(function*() {
    let calls = 0
    const prompts: Array<Prompt.Prompt> = []
    const next = (options: LanguageModel.ProviderOptions) => {
      calls += 1
      prompts.push(options.prompt)
      return script(options.prompt, calls)
    }
    const service = yield* LanguageModel.make({
      generateText: (options) =>
        Effect.suspend(() => {
          const reply = next(options)
          return Effect.andThen(
            Effect.orDie(reply.before ?? Effect.void),
            reply.fail === true || reply.refuse === true ? Effect.fail(providerError) : Effect.succeed(generateParts(reply))
          )
        }),
      streamText: (options) =>
        Stream.unwrap(Effect.sync(() => {
          const reply = next(options)
          return Stream.concat(Stream.fromEffectDrain(Effect.orDie(reply.before ?? Effect.void)), streamParts(reply))
        }))
    })
    return {
      service,
      layer: Layer.succeed(LanguageModel.LanguageModel, service),
      calls: () => calls,
      prompts
    }
  })
