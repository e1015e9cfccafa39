/**
 * What a test logs, kept for it to read instead of printed: a green run
 * prints no warnings, and a test that expects some checks them.
 */
import { Effect, Logger } from "effect"

export interface Line {
  readonly level: string
  readonly text: string
}

/** Runs `f` with every line it logs kept in `lines`, none printed. */
export const capturingLogs = <A, E, R>(f: (lines: Array<Line>) => Effect.Effect<A, E, R>): Effect.Effect<A, E, R> => {
  const lines: Array<Line> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push({ level: logLevel, text: (Array.isArray(message) ? message : [message]).join(" ") })
  })
  return f(lines).pipe(Effect.provide(Logger.layer([logger])))
}

/** The lines the Redis store says of an outage: its start and its end. */
export const outageLines = (lines: ReadonlyArray<Line>): ReadonlyArray<string> =>
  lines.filter((line) => /^Redis (does not answer|answers again)/.test(line.text)).map((line) =>
    `${line.level} ${line.text.startsWith("Redis does not answer") ? "start" : "end"}`
  )
