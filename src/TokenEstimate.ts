/**
 * Estimates of a call's tokens before it runs, as `BudgetedLanguageModel`
 * holds them: the prompt counted from its length when no `effect/ai`
 * `Tokenizer` is in context, and an output limit for calls that set none.
 *
 * @since 0.1.0
 */
import type { Prompt } from "effect/ai"

/**
 * Output tokens held for a call when neither the call nor the layer sets a
 * limit: a common provider default.
 *
 * @since 0.1.0
 * @category models
 */
export const defaultMaxOutputTokens = 4096

/**
 * Characters of prompt text counted as one token when no `Tokenizer` is in
 * context: the usual rule of thumb for English text.
 *
 * @since 0.1.0
 * @category models
 */
export const charsPerToken = 4

/**
 * Tokens added per prompt message when no `Tokenizer` is in context, for the
 * role and framing a provider adds around each message.
 *
 * @since 0.1.0
 * @category models
 */
export const tokensPerMessage = 4

/** The length of `value` as JSON: what a provider sends of tool arguments and results. */
const jsonLength = (value: unknown): number => {
  try {
    return JSON.stringify(value)?.length ?? 0
  } catch {
    return 0
  }
}

const charsOfPart = (part: Prompt.Part): number => {
  switch (part.type) {
    case "text":
    case "reasoning":
      return part.text.length
    case "tool-call":
      return part.name.length + jsonLength(part.params)
    case "tool-result":
      return part.modelOutput === undefined
        ? jsonLength(part.result)
        : part.modelOutput.reduce((sum, output) => sum + (output.type === "text" ? output.text.length : 0), 0)
    default:
      // Files, images and tool approvals are not counted: see docs/ai.md.
      return 0
  }
}

/**
 * Input tokens of `prompt` without a tokenizer: one per `charsPerToken`
 * characters of its text, tool arguments and tool results, rounded up, plus
 * `tokensPerMessage` for each message.
 *
 * @example
 * ```ts
 * import { TokenEstimate } from "effect-token-budget"
 * import { Prompt } from "effect/ai"
 *
 * // ⌈11 / 4⌉ + 4 for its one message
 * TokenEstimate.estimateInputTokens(Prompt.make("hello world")) // 7
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const estimateInputTokens = (prompt: Prompt.Prompt): number => {
  let chars = 0
  for (const message of prompt.content) {
    if (message.role === "system") {
      chars += message.content.length
    } else {
      for (const part of message.content) chars += charsOfPart(part)
    }
  }
  return Math.ceil(chars / charsPerToken) + tokensPerMessage * prompt.content.length
}
