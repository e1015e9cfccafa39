/**
 * Type-checks every ```ts / ```typescript code block of README.md and
 * docs/*.md, so no example in the docs can rot.
 *
 *   npm run check:docs            # check; errors point at the doc's own lines
 *   npm run check:docs -- --keep  # keep the extracted files and print where
 *
 * Each block is written to a file of its own (named after its doc and line)
 * in a temporary directory and compiled as a module with the repository's
 * compiler options (strict and the rest), except that unused locals and
 * parameters are allowed: a doc may define a layer or a program only to
 * show it. The import "effect-token-budget" resolves to ./src/index.ts (and
 * "/redis", "/sql-pg", "/testing" to theirs), so the docs are checked against the code
 * in this tree, not a build.
 *
 * The convention for writers:
 * - a block is a complete module: it imports what it uses, and wraps
 *   `yield*` in an `Effect.gen`;
 * - what the reader brings (an LLM client, their documents) is declared,
 *   not implemented: `declare const callLlm: (prompt: string) => Effect.Effect<...>`;
 * - a block that is truly better as a fragment is fenced ```ts fragment: it
 *   is highlighted as TypeScript and not checked. Keep those rare.
 * Blocks in other languages (```sh, plain ```) are not checked.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, relative } from "node:path"
import { fileURLToPath } from "node:url"

const root = join(dirname(fileURLToPath(import.meta.url)), "..")
const keep = process.argv.includes("--keep")
const started = performance.now()

interface Block {
  /** The doc, relative to the repository: `docs/nesting.md`. */
  readonly doc: string
  /** The line of the opening fence, 1-based: the block's first line is the next one. */
  readonly fenceLine: number
  readonly code: string
  readonly fragment: boolean
}

const docs = [
  "README.md",
  ...readdirSync(join(root, "docs")).filter((name) => name.endsWith(".md")).sort().map((name) => `docs/${name}`)
]

const blocksOf = (doc: string): Array<Block> => {
  const lines = readFileSync(join(root, doc), "utf8").split("\n")
  const blocks: Array<Block> = []
  let open: { readonly line: number; readonly indent: string; readonly lang: string; readonly info: string } | undefined
  let body: Array<string> = []
  lines.forEach((line, index) => {
    if (open === undefined) {
      const fence = /^(\s*)```\s*([\w-]*)\s*(.*)$/.exec(line)
      if (fence !== null) {
        open = { line: index + 1, indent: fence[1] ?? "", lang: fence[2] ?? "", info: fence[3] ?? "" }
        body = []
      }
    } else if (/^\s*```\s*$/.test(line)) {
      if (open.lang === "ts" || open.lang === "typescript") {
        blocks.push({
          doc,
          fenceLine: open.line,
          code: body.join("\n") + "\n",
          fragment: open.info.split(/\s+/).includes("fragment")
        })
      }
      open = undefined
    } else {
      body.push(line.startsWith(open.indent) ? line.slice(open.indent.length) : line)
    }
  })
  if (open !== undefined) throw new Error(`${doc}:${open.line}: code block never closed`)
  return blocks
}

const blocks = docs.flatMap(blocksOf)
const checked = blocks.filter((block) => !block.fragment)
if (checked.length === 0) {
  console.error("check-docs: found no ```ts block to check: is the extraction broken?")
  process.exit(1)
}

// One file per block, named after its doc and line: docs__nesting.md__L8.ts
const dir = mkdtempSync(join(tmpdir(), "check-docs-"))
const byFile = new Map<string, Block>()
for (const block of checked) {
  const file = `${block.doc.replaceAll("/", "__")}__L${block.fenceLine}.ts`
  byFile.set(file, block)
  writeFileSync(join(dir, file), block.code)
}
// Bare imports (effect, @effect/platform-node) and `types: ["node"]` resolve
// through the repository's node_modules.
symlinkSync(join(root, "node_modules"), join(dir, "node_modules"), "dir")
writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module", private: true }))
writeFileSync(
  join(dir, "tsconfig.json"),
  JSON.stringify(
    {
      extends: join(root, "tsconfig.json"),
      compilerOptions: {
        noEmit: true,
        noUnusedLocals: false,
        noUnusedParameters: false,
        paths: {
          "effect-token-budget": [join(root, "src/index.ts")],
          "effect-token-budget/redis": [join(root, "src/redis.ts")],
          "effect-token-budget/sql-pg": [join(root, "src/sql-pg.ts")],
          "effect-token-budget/testing": [join(root, "src/testing.ts")]
        }
      },
      include: [],
      files: [...byFile.keys()]
    },
    null,
    2
  )
)

const tsc = join(root, "node_modules/typescript/bin/tsc")
const result = spawnSync(process.execPath, [tsc, "-p", join(dir, "tsconfig.json"), "--pretty", "false"], {
  cwd: dir,
  encoding: "utf8"
})

// Point every error at the doc line it comes from: docs/nesting.md:12:5
const output = `${result.stdout}${result.stderr}`.split("\n").filter((line) => line.length > 0).map((line) => {
  const error = /^(.+?\.ts)\((\d+),(\d+)\): (.*)$/.exec(line)
  if (error === null) return line
  const [, file = "", lineText = "0", column = "0", message = ""] = error
  const block = byFile.get(file.replace(/^.*[\\/]/, ""))
  if (block === undefined) return `${relative(root, join(dir, file))}:${lineText}:${column}: ${message}`
  return `${block.doc}:${block.fenceLine + Number(lineText)}:${column}: ${message}`
})

const seconds = ((performance.now() - started) / 1000).toFixed(1)
const fragments = blocks.length - checked.length
const summary = `${checked.length} code blocks in ${docs.length} docs` +
  (fragments > 0 ? ` (${fragments} fragment${fragments === 1 ? "" : "s"} not checked)` : "")
if (keep) console.log(`check-docs: extracted blocks kept in ${dir}`)
else rmSync(dir, { recursive: true, force: true })

if (result.status !== 0 || result.error !== undefined) {
  for (const line of output) console.error(line)
  if (result.error !== undefined) console.error(result.error)
  console.error(`check-docs: type errors in the docs (${summary}, ${seconds}s)`)
  process.exit(1)
}
console.log(`check-docs: ${summary} type-check (${seconds}s)`)
