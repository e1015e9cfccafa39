import type { BudgetOptions } from "../Budget.ts"
import type { ModelLimit } from "../BudgetedLanguageModel.ts"
import { InvalidUsage } from "../BudgetError.ts"
import { settingsOf } from "./options.ts"

/*
 * Per-model limits of `BudgetedLanguageModel`: checked, and looked up by a
 * call's model name. Each configured key is kept by a child budget of its
 * own, `model:<key>`, below the budget a call is charged to, so the model's
 * rate and concurrency are checked with that budget's caps in one step.
 */

/** One configured limit: its key, the child budget that keeps it, and that child's options. */
export interface LimitSetting {
  readonly key: string
  /** The field its options are named by in errors: `limits["gpt-5-mini"]`. */
  readonly field: string
  /** The child budget's name: `model:` and the key, its "/" and "%" escaped (a name has no "/"). */
  readonly name: string
  readonly options: Omit<BudgetOptions, "name">
}

/** Limits by model name: an exact key first, else the longest prefix key (`"claude-*"`, `"*"`). */
export interface Limits {
  readonly all: ReadonlyArray<LimitSetting>
  readonly lookup: (model: string | undefined) => LimitSetting | undefined
}

const noLimits: Limits = { all: [], lookup: () => undefined }

const example = "{ \"gpt-5-mini\": { rate: { tokens: 2_000_000, requests: 5_000, per: \"1 minute\" }, maxConcurrent: 64 } }"

/** A child budget's name for a key: the same key, the same counters; no two keys share one. */
const childName = (key: string): string => `model:${key.replaceAll("%", "%25").replaceAll("/", "%2F")}`

/** `error`, naming its field as a field of `field` (`rate.tokens` of `limits["m"]`). */
export const refield = (error: InvalidUsage, field: string): InvalidUsage =>
  new InvalidUsage({ field: `${field}.${error.field}`, value: error.value, reason: error.reason })

/** The limits `limits` describe, or why they are invalid. */
export const limitsOf = (limits: Readonly<Record<string, ModelLimit>> | undefined): Limits | InvalidUsage => {
  if (limits === undefined) return noLimits
  if (limits === null || typeof limits !== "object" || Array.isArray(limits)) {
    return new InvalidUsage({
      field: "limits",
      value: limits,
      reason: `must map model names, or prefixes ending in "*", to limits, like ${example}`
    })
  }
  const exact = new Map<string, LimitSetting>()
  const prefixes: Array<readonly [prefix: string, setting: LimitSetting]> = []
  for (const [key, entry] of Object.entries(limits)) {
    const star = key.indexOf("*")
    if (key.length === 0 || (star >= 0 && star !== key.length - 1)) {
      return new InvalidUsage({
        field: "limits",
        value: key,
        reason: "keys must be model names, or prefixes with \"*\" at their end only (\"claude-*\", or \"*\" for any model)"
      })
    }
    const field = `limits["${key}"]`
    if (entry === null || typeof entry !== "object") {
      return new InvalidUsage({
        field,
        value: entry,
        reason: "must be an object like { rate: { tokens: 2_000_000, per: \"1 minute\" }, maxConcurrent: 64 }"
      })
    }
    if (entry.rate === undefined && entry.maxConcurrent === undefined) {
      return new InvalidUsage({ field, value: entry, reason: "must give a rate, a maxConcurrent, or both" })
    }
    const name = childName(key)
    const options = { rate: entry.rate, maxConcurrent: entry.maxConcurrent }
    const settings = settingsOf({ ...options, name }, name)
    if (settings instanceof InvalidUsage) return refield(settings, field)
    const setting: LimitSetting = { key, field, name, options }
    if (star < 0) exact.set(key, setting)
    else prefixes.push([key.slice(0, -1), setting])
  }
  // Longest first, so the most specific prefix wins.
  prefixes.sort(([a], [b]) => b.length - a.length)
  const all = [...exact.values(), ...prefixes.map(([, setting]) => setting)]
  if (all.length === 0) return noLimits
  return {
    all,
    lookup: (model) => {
      if (model === undefined) return prefixes.find(([prefix]) => prefix === "")?.[1]
      const named = exact.get(model)
      if (named !== undefined) return named
      for (const [prefix, setting] of prefixes) {
        if (model.startsWith(prefix)) return setting
      }
      return undefined
    }
  }
}
