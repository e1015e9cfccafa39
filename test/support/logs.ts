/**
 * What a test logs, kept for it to read instead of printed (the contract
 * suite's helper), and what the Redis store says of an outage.
 */
import { type Line } from "../../src/internal/testing/logs.ts"

export { capturingLogs, type Line } from "../../src/internal/testing/logs.ts"

/** The lines the Redis store says of an outage: its start and its end. */
export const outageLines = (lines: ReadonlyArray<Line>): ReadonlyArray<string> =>
  lines.filter((line) => /^Redis (does not answer|answers again)/.test(line.text)).map((line) =>
    `${line.level} ${line.text.startsWith("Redis does not answer") ? "start" : "end"}`
  )
