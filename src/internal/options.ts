import type { BudgetOptions, RateOptions } from "../Budget.ts"
import type { RateSetting } from "./rate.ts"
import { InvalidUsage } from "../BudgetError.ts"
import { capError, maxUsd, usdToNanos } from "../Usage.ts"
import type { Settings } from "../BudgetStore.ts"
import { Cron, Duration, Effect, Option } from "effect"
import type { Config } from "effect"
import { parseNumber, read } from "./config.ts"
import type { Key } from "./config.ts"
import { storable, unstorableReason } from "./text.ts"

const defaultThresholds: ReadonlyArray<number> = [0.5, 0.8, 0.95]

const nameError = (name: unknown): InvalidUsage | undefined =>
  typeof name !== "string" || name.length === 0 || name.includes("/")
    ? new InvalidUsage({ field: "name", value: name, reason: "must be a non-empty string without \"/\"" })
    : storable(name)
    ? undefined
    : new InvalidUsage({ field: "name", value: name, reason: unstorableReason })

const thresholdsError = (thresholds: ReadonlyArray<number>): InvalidUsage | undefined =>
  Array.isArray(thresholds) && thresholds.every((t) => typeof t === "number" && t > 0 && t <= 1)
    ? undefined
    : new InvalidUsage({
      field: "thresholds",
      value: thresholds,
      reason: "must be fractions of a cap, each greater than 0 and at most 1 (0.8 for 80%)"
    })

/** The settings `options` describe, or why they are invalid. */
export const settingsOf = (options: BudgetOptions, defaultName: string): Settings | InvalidUsage => {
  const name = options.name ?? defaultName
  const thresholds = options.thresholds ?? defaultThresholds
  const invalid = nameError(name) ?? capError("tokenCap", options.tokenCap) ?? capError("usdCap", options.usdCap) ??
    thresholdsError(thresholds)
  if (invalid !== undefined) return invalid
  const window = options.window === undefined || Cron.isCron(options.window)
    ? options.window
    : millisOf("window", options.window)
  if (window instanceof InvalidUsage) return window
  const idleTtlMillis = options.idleTtl === undefined ? defaultIdleTtlMillis : idleMillisOf(options.idleTtl)
  if (idleTtlMillis instanceof InvalidUsage) return idleTtlMillis
  const rates = options.rate === undefined ? [] : ratesOf(options.rate)
  if (rates instanceof InvalidUsage) return rates
  const maxConcurrent = options.maxConcurrent ?? Infinity
  if (!(maxConcurrent === Infinity || (Number.isSafeInteger(maxConcurrent) && maxConcurrent >= 1))) {
    return new InvalidUsage({
      field: "maxConcurrent",
      value: options.maxConcurrent,
      reason: "must be a whole number of holds, at least 1, or left out for no limit"
    })
  }
  return {
    name,
    tokenCap: options.tokenCap ?? Infinity,
    nanoCap: options.usdCap === undefined ? Infinity : usdToNanos(options.usdCap),
    window,
    thresholds: [...new Set(thresholds)].sort((a, b) => a - b),
    metrics: options.metrics ?? true,
    idleTtlMillis,
    rates,
    maxConcurrent
  }
}

/** The buckets of a rate, in the store's units, or why it is not one. */
const ratesOf = (rate: RateOptions): ReadonlyArray<RateSetting> | InvalidUsage => {
  const periodMillis = millisOf("rate.per", rate.per)
  if (periodMillis instanceof InvalidUsage) return periodMillis
  if (!Number.isInteger(periodMillis)) {
    return new InvalidUsage({ field: "rate.per", value: rate.per, reason: "must be a whole number of milliseconds (\"1 minute\", 1500)" })
  }
  const burst = rate.burst ?? 1
  if (!(typeof burst === "number" && burst > 0 && Number.isFinite(burst))) {
    return new InvalidUsage({ field: "rate.burst", value: rate.burst, reason: "must be a positive number of periods (1, 0.5)" })
  }
  const settings: Array<RateSetting> = []
  const axes = [
    ["tokens", rate.tokens, (n: number) => n, "a whole number of tokens, at least 1"],
    ["requests", rate.requests, (n: number) => n, "a whole number of requests, at least 1"],
    ["usd", rate.usd, usdToNanos, `a number of dollars from 0.000000001 to ${maxUsd}`]
  ] as const
  for (const [axis, given, toUnits, rule] of axes) {
    if (given === undefined) continue
    const amount = typeof given === "number" && given > 0 && given <= (axis === "usd" ? maxUsd : Number.MAX_SAFE_INTEGER)
      ? toUnits(given)
      : NaN
    if (!(Number.isSafeInteger(amount) && amount >= 1)) {
      return new InvalidUsage({ field: `rate.${axis}`, value: given, reason: `must be ${rule}, or left out` })
    }
    const capacity = amount * burst
    if (capacity < 1) {
      return new InvalidUsage({
        field: "rate.burst",
        value: rate.burst,
        reason: `would make the ${axis} bucket hold ${capacity}, less than one ${
          axis === "usd" ? "nano-dollar" : axis === "tokens" ? "token" : "request"
        }: it must hold at least one`
      })
    }
    settings.push({ axis, amount, periodMillis, capacity })
  }
  if (settings.length === 0) {
    return new InvalidUsage({ field: "rate", value: rate, reason: "must give tokens, requests or usd per period" })
  }
  return settings
}

/** How long an unused child with usage is kept by default: an hour. */
const defaultIdleTtlMillis = 3_600_000

/** A positive duration in milliseconds, `Infinity` for none, or why it is not one. */
const idleMillisOf = (input: Duration.Input): number | InvalidUsage => {
  const millis = Option.map(Duration.fromInput(input), Duration.toMillis)
  return Option.isSome(millis) && millis.value > 0
    ? millis.value
    : new InvalidUsage({
      field: "idleTtl",
      value: input,
      reason: "must be a positive Duration (\"1 hour\", Duration.days(31)), or Infinity to keep idle children"
    })
}

/** A positive, finite duration in milliseconds, or why it is not one. */
export const millisOf = (field: string, input: Duration.Input): number | InvalidUsage => {
  const millis = Option.map(Duration.fromInput(input), Duration.toMillis)
  return Option.isSome(millis) && millis.value > 0 && Number.isFinite(millis.value)
    ? millis.value
    : new InvalidUsage({ field, value: input, reason: "must be a positive, finite Duration (\"1 day\", Duration.hours(6))" })
}

const capKey = (key: string, field: "tokenCap" | "usdCap", rule: string): Key<number> => ({
  key,
  rule,
  unset: "no cap",
  parse: (input) => {
    const cap = parseNumber(input)
    return cap !== undefined && capError(field, cap) === undefined ? cap : undefined
  }
})

/**
 * A budget's options from the `ConfigProvider` in context: `BUDGET_NAME`,
 * `BUDGET_TOKEN_CAP`, `BUDGET_USD_CAP`, each optional; a key set but empty
 * or not valid fails with `InvalidUsage` naming it.
 */
export const optionsFromConfig: Effect.Effect<BudgetOptions, InvalidUsage | Config.ConfigError> = Effect.all({
  name: read({
    key: "BUDGET_NAME",
    rule: "must be a name without \"/\", such as evals",
    unset: "the name \"budget\"",
    parse: (input) => nameError(input) === undefined ? input : undefined
  }),
  tokenCap: read(
    capKey("BUDGET_TOKEN_CAP", "tokenCap", "must be a whole number of tokens from 0 to 9007199254740991, such as 1000000")
  ),
  usdCap: read(capKey("BUDGET_USD_CAP", "usdCap", `must be a number of US dollars from 0 to ${maxUsd}, such as 10 or 12.5`))
})
