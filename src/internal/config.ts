/**
 * Configuration keys read as DESIGN's rule 7 asks: a key left out is
 * `undefined` (its default applies); a key set but empty, or set to a value
 * that does not parse or is out of range, fails with `InvalidUsage` naming
 * the key, the value as given and an example of a valid one.
 */
import { Config, ConfigProvider, Effect, Option, Schema } from "effect"
import type { Duration } from "effect"
import { InvalidUsage } from "../BudgetError.ts"

/** One configuration key: what a valid value is, and what leaving it out gives. */
export interface Key<A> {
  readonly key: string
  /** What the value must be, with an example: `must be ..., such as ...`. */
  readonly rule: string
  /** What leaving the key out gives: `no cap`, `30 seconds`. */
  readonly unset: string
  /** The value a string stands for, or `undefined` when it is not a valid one. */
  readonly parse: (input: string) => A | undefined
}

const invalid = (spec: Key<unknown>, value: string): InvalidUsage =>
  new InvalidUsage({ field: spec.key, value, reason: `${spec.rule} (left out, not empty, for ${spec.unset})` })

const load = (provider: ConfigProvider.ConfigProvider, path: ConfigProvider.Path) =>
  Effect.mapError(provider.load(path), (error) => new Config.ConfigError(error))

const lists = (node: ConfigProvider.Node | undefined, key: string | undefined): boolean =>
  node?._tag === "Record" && key !== undefined && node.keys.has(key)

// effect's providers (fromEnv, fromUnknown, fromDotEnv, ...) load an empty
// string as no value at all, so `KEY=` reads as if KEY were left out. They
// still list the key among its parent's children: fromUnknown's root lists
// `KEY`; fromEnv splits names on "_", so `BUDGET_USD` lists `CAP`. A key so
// listed whose own path holds nothing was set, to nothing. (fromEnv cannot
// tell `BUDGET_USD_CAP=` apart from its absence when another variable's
// name begins with `BUDGET_USD_CAP_`: that one still reads as left out.)
const setButEmpty = Effect.fnUntraced(function*(provider: ConfigProvider.ConfigProvider, key: string) {
  if (lists(yield* load(provider, []), key) && (yield* load(provider, [key]))?.value === undefined) return true
  const segments = key.split("_")
  if (segments.length < 2) return false
  return lists(yield* load(provider, segments.slice(0, -1)), segments.at(-1)) &&
    (yield* load(provider, segments)) === undefined
})

/**
 * The value of `spec.key` from the `ConfigProvider` in context: `undefined`
 * when it is left out, `InvalidUsage` when it is empty (also from a provider
 * made with `preserveEmptyStrings`) or not valid.
 */
export const read = Effect.fnUntraced(function*<A>(spec: Key<A>) {
  const provider = yield* ConfigProvider.ConfigProvider
  const input = yield* Config.option(Config.String(spec.key)).parse(provider)
  if (Option.isNone(input)) {
    if (yield* setButEmpty(provider, spec.key)) return yield* invalid(spec, "")
    return undefined
  }
  const value = input.value === "" ? undefined : spec.parse(input.value)
  if (value === undefined) return yield* invalid(spec, input.value)
  return value
})

// The strings effect's `Config.Finite` reads as numbers (`12.5`, `1e6`;
// not `10_000`, ` 12 `, `0x10` or `Infinity`).
const finite = Schema.decodeUnknownOption(Schema.toCodecStringTree(Schema.Finite))

/** The finite number a string writes, as effect's `Config.Finite` reads it, or `undefined`. */
export const parseNumber = (input: string): number | undefined => Option.getOrUndefined(finite(input))

const duration = Schema.decodeUnknownOption(Schema.DurationFromString)

/** The Duration a string writes (`"30 seconds"`), as effect's `Config.Duration` reads it, or `undefined`. */
export const parseDuration = (input: string): Duration.Duration | undefined => Option.getOrUndefined(duration(input))
