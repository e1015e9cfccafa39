import type { BudgetOptions } from "../Budget.ts"
import { InvalidUsage } from "../BudgetError.ts"
import { capError, usdToNanos } from "../Usage.ts"
import type { Settings } from "../BudgetStore.ts"
import { Config, Cron, Duration, Option } from "effect"

const defaultThresholds: ReadonlyArray<number> = [0.5, 0.8, 0.95]

const nameError = (name: unknown): InvalidUsage | undefined =>
  typeof name === "string" && name.length > 0 && !name.includes("/")
    ? undefined
    : new InvalidUsage({ field: "name", value: name, reason: "must be a non-empty string without \"/\"" })

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
  return {
    name,
    tokenCap: options.tokenCap ?? Infinity,
    nanoCap: options.usdCap === undefined ? Infinity : usdToNanos(options.usdCap),
    window,
    thresholds: [...new Set(thresholds)].sort((a, b) => a - b),
    metrics: options.metrics ?? true
  }
}

/** A positive, finite duration in milliseconds, or why it is not one. */
export const millisOf = (field: string, input: Duration.Input): number | InvalidUsage => {
  const millis = Option.map(Duration.fromInput(input), Duration.toMillis)
  return Option.isSome(millis) && millis.value > 0 && Number.isFinite(millis.value)
    ? millis.value
    : new InvalidUsage({ field, value: input, reason: "must be a positive, finite Duration (\"1 day\", Duration.hours(6))" })
}

/** A config value that may be left out: `undefined` then. */
export const optional = <A>(config: Config.Config<A>): Config.Config<A | undefined> =>
  config.pipe(Config.option, Config.map(Option.getOrUndefined))

/** A budget's options from the environment: `BUDGET_NAME`, `BUDGET_TOKEN_CAP`, `BUDGET_USD_CAP`. */
export const defaultConfig: Config.Wrap<BudgetOptions> = {
  name: Config.String("BUDGET_NAME").pipe(Config.withDefault("budget")),
  tokenCap: optional(Config.Number("BUDGET_TOKEN_CAP")),
  usdCap: optional(Config.Number("BUDGET_USD_CAP"))
}
