import { Effect, Logger } from "effect"

/*
 * What a test logs, kept for it to read instead of printed: a green run
 * prints no warnings, and a test that expects some checks them.
 */

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

/** The text of the warnings among `lines`. */
export const warningsOf = (lines: ReadonlyArray<Line>): Array<string> =>
  lines.filter((line) => line.level === "Warn").map((line) => line.text)
