import { InvalidUsage } from "../BudgetError.ts"
import { storable, unstorableReason } from "./text.ts"
import type { Labels } from "../Ledger.ts"

/** The most labels a charge may carry, and the longest name and value. */
const maxLabels = 64
const maxName = 128
const maxValue = 1_024

/** An object literal's kind: a plain object, or one made with no prototype (a Map or a class instance is not labels). */
const isPlain = (value: object): boolean => {
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Labels left out: one shared empty object, never changed. */
export const noLabels: Labels = Object.freeze({})

/**
 * A charge's labels, copied (so the caller changing its object later
 * changes no entry), or why they cannot be labels.
 */
export const labelsOf = (labels: unknown): Labels | undefined | InvalidUsage => {
  if (labels === undefined) return undefined
  if (labels === null || typeof labels !== "object" || !isPlain(labels) || Object.getOwnPropertySymbols(labels).length > 0) {
    return new InvalidUsage({
      field: "labels",
      value: labels,
      reason: "must be an object of strings by name, like { model: \"gpt-5-mini\", feature: \"search\" }"
    })
  }
  // No prototype: a label named "__proto__" is a label like any other.
  const copy: Record<string, string> = Object.create(null)
  let count = 0
  for (const [name, value] of Object.entries(labels)) {
    if (++count > maxLabels) {
      return new InvalidUsage({ field: "labels", value: labels, reason: `must have at most ${maxLabels} labels` })
    }
    if (name.length === 0 || name.length > maxName || !storable(name)) {
      return new InvalidUsage({
        field: "labels",
        value: name,
        reason: `names must have 1 to ${maxName} characters, without NUL characters or lone surrogates`
      })
    }
    if (typeof value !== "string" || value.length > maxValue) {
      return new InvalidUsage({
        field: `labels.${name}`,
        value,
        reason: `must be a string of at most ${maxValue} characters`
      })
    }
    if (!storable(value)) return new InvalidUsage({ field: `labels.${name}`, value, reason: unstorableReason })
    copy[name] = value
  }
  // None given: as if left out.
  return count === 0 ? undefined : copy
}
