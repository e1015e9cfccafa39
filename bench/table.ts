/**
 * The one table `npm run bench` prints: each figure in ns/op and as a ratio
 * to the case it is judged against, measured in the same run.
 */
import type { Case, Versus } from "./case.ts"

export interface Row {
  readonly case: Case
  /** The comparison this row makes, one of `case.versus`. */
  readonly versus: Versus | undefined
  /** Median over the rounds; `undefined` when the case failed. */
  readonly nsPerOp: number | undefined
  /** Median of the per-round ratios to `versus`, when it has one. */
  readonly ratio: number | undefined
  /** Why the case, or the case it is judged against, could not be measured. */
  readonly failure: string | undefined
}

const headers = ["case", "ns/op", "ratio", "vs", "target", "result"] as const

const cells = (row: Row): ReadonlyArray<string> => {
  const versus = row.versus
  const target = versus?.target
  const { nsPerOp, ratio } = row
  if (row.failure !== undefined) return [row.case.name, "", "", versus?.case ?? "", "", "FAILED"]
  return [
    row.case.name,
    nsPerOp === undefined ? "" : nsPerOp.toFixed(nsPerOp < 99.95 ? 1 : 0),
    ratio === undefined ? "" : `${ratio.toFixed(2)}x`,
    versus?.case ?? "",
    // 1.25 must not read as 1.3: two decimals where one would round.
    target === undefined ? "" : `<= ${target.toFixed(Number.isInteger(target * 10) ? 1 : 2)}x`,
    target === undefined || ratio === undefined ? "" : ratio <= target ? "ok" : "OVER"
  ]
}

// Numbers read best right-aligned, names left-aligned.
const rightAligned = new Set([1, 2, 4])

export const render = (rows: ReadonlyArray<Row>): string => {
  const lines = [headers, ...rows.map(cells)]
  const widths = headers.map((_, i) => Math.max(...lines.map((line) => line[i]!.length)))
  const format = (line: ReadonlyArray<string>) =>
    line.map((cell, i) => rightAligned.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)).join("  ").trimEnd()
  const rule = widths.map((w) => "-".repeat(w)).join("  ")
  return [format(headers), rule, ...lines.slice(1).map(format)].join("\n")
}
