import { InvalidUsage } from "../BudgetError.ts"
import type { Labels } from "../Ledger.ts"

/** The most labels a charge may carry, and the longest name and value. */
const maxLabels = 64
const maxName = 128
const maxValue = 1_024

/** Labels left out: one shared empty object, never changed. */
export const noLabels: Labels = Object.freeze({})

/**
 * A charge's labels, copied (so the caller changing its object later
 * changes no entry), or why they cannot be labels.
 */
export const labelsOf = (labels: unknown): Labels | undefined | InvalidUsage => {
  if (labels === undefined) return undefined
  if (labels === null || typeof labels !== "object" || Array.isArray(labels)) {
    return new InvalidUsage({
      field: "labels",
      value: labels,
      reason: "must be an object of strings by name, like { model: \"gpt-5-mini\", feature: \"search\" }"
    })
  }
  const copy: Record<string, string> = {}
  let count = 0
  for (const [name, value] of Object.entries(labels)) {
    if (++count > maxLabels) {
      return new InvalidUsage({ field: "labels", value: labels, reason: `must have at most ${maxLabels} labels` })
    }
    if (name.length === 0 || name.length > maxName) {
      return new InvalidUsage({ field: "labels", value: name, reason: `names must have 1 to ${maxName} characters` })
    }
    if (typeof value !== "string" || value.length > maxValue) {
      return new InvalidUsage({
        field: `labels.${name}`,
        value,
        reason: `must be a string of at most ${maxValue} characters`
      })
    }
    copy[name] = value
  }
  // None given: as if left out.
  return count === 0 ? undefined : copy
}
