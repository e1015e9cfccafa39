/**
 * A small team of agents sharing one budget, over a scripted model (no
 * network).
 *
 * The agents are plain `effect/ai` code: they call `LanguageModel` and know
 * nothing of budgets. Two lines do the budgeting: the model is wrapped once
 * with `BudgetedLanguageModel.layer`, and each agent runs under its own child
 * of the team's budget with `Budget.layerChild`. Every call then holds an
 * estimate, is charged what the model reports (priced per million tokens,
 * cache reads at a tenth), and counts against the agent and the team. The
 * critic, left to itself, would go on forever: its own cap stops it.
 *
 *   npx tsx examples/agent.ts
 *
 * Tests can import `run`.
 */
import { Console, Effect, Layer, Schema, Stream } from "effect"
import { LanguageModel, Model, Prompt } from "effect/ai"
import type { Response } from "effect/ai"
import { realpathSync } from "node:fs"
import { pathToFileURL } from "node:url"
import { Budget, BudgetedLanguageModel, Pricing } from "../src/index.ts"
import type { Snapshot } from "../src/index.ts"

// --- the team ---------------------------------------------------------------

/** Every agent's prompt starts with this brief, so the model caches it. */
const brief = "You are on a team writing a short guide to budgeting LLM calls in Effect programs. " +
  "Be concrete, cite numbers, prefer short sentences. ".repeat(30)

interface Agent {
  readonly name: string
  readonly caps: { readonly tokenCap: number; readonly usdCap?: number }
  readonly work: (say: (line: string) => Effect.Effect<void>) => Effect.Effect<Tally, unknown, LanguageModel.LanguageModel>
}

interface Tally {
  readonly calls: number
  readonly refused: number
}

const system = (role: string, task: string): Prompt.RawInput => [
  { role: "system", content: `${brief}\nYou are the ${role}.` },
  { role: "user", content: [{ type: "text", text: task }] }
]

const Plan = Schema.Struct({ topics: Schema.Array(Schema.String) })

const planner: Agent = {
  name: "planner",
  caps: { tokenCap: 3_000 },
  work: (say) =>
    Effect.gen(function*() {
      const plan = yield* LanguageModel.generateObject({
        prompt: system("planner", "List the topics of the guide."),
        schema: Plan
      })
      yield* say(`planner: ${plan.value.topics.join(", ")}`)
      return { calls: 1, refused: 0 }
    })
}

const researcher: Agent = {
  name: "researcher",
  caps: { tokenCap: 8_000 },
  work: (say) =>
    Effect.gen(function*() {
      const topics = ["reservations", "prompt caching", "fan-out"]
      for (const topic of topics) {
        const notes = yield* LanguageModel.generateText({ prompt: system("researcher", `Research ${topic}.`) })
        yield* say(`researcher: ${notes.text.slice(0, 60)}...`)
      }
      return { calls: topics.length, refused: 0 }
    })
}

const writer: Agent = {
  name: "writer",
  caps: { tokenCap: 5_000 },
  work: (say) =>
    Effect.gen(function*() {
      // A stream holds its estimate from the first part to the finish part.
      const draft = yield* LanguageModel.streamText({ prompt: system("writer", "Write the guide.") }).pipe(
        Stream.filter((part): part is Response.TextDeltaPart => part.type === "text-delta"),
        Stream.map((part) => part.delta),
        Stream.mkString
      )
      yield* say(`writer: ${draft.length} characters drafted`)
      return { calls: 1, refused: 0 }
    })
}

const critic: Agent = {
  name: "critic",
  caps: { tokenCap: 4_000 },
  work: (say) =>
    Effect.gen(function*() {
      // Never satisfied: asks for one more review until its budget says no.
      for (let round = 1; round <= 20; round++) {
        const review = yield* LanguageModel.generateText({ prompt: system("critic", `Review round ${round}.`) }).pipe(
          BudgetedLanguageModel.unwrapBudgetExceeded,
          Effect.catchTag("BudgetExceeded", (refusal) =>
            Effect.as(say(`critic: stopped by the budget (${refusal.message})`), undefined))
        )
        if (review === undefined) return { calls: round - 1, refused: 1 }
        yield* say(`critic: ${review.text}`)
      }
      return { calls: 20, refused: 0 }
    })
}

const agents: ReadonlyArray<Agent> = [planner, researcher, writer, critic]

// --- the scripted model -----------------------------------------------------

const modelName = "scripted-mini"

/** USD per million tokens: made-up prices in the shape of a provider's. */
const prices = { [modelName]: { input: 0.4, cacheRead: 0.04, cacheWrite: 0.5, output: 1.6 } }

const answerTo = (role: string, task: string): string => {
  switch (role) {
    case "planner":
      return JSON.stringify({ topics: ["reservations", "prompt caching", "fan-out"] })
    case "researcher":
      return `Notes for "${task}": ` + "holds are taken before a call and settled after it; ".repeat(12)
    case "writer":
      return "A budget says yes or no before a call starts, and learns the truth when it ends. ".repeat(16)
    default:
      return `${task.replace("Review", "Nit for")}: tighten the second paragraph.`
  }
}

const textOf = (message: Prompt.Message): string =>
  message.role === "system"
    ? message.content
    : message.content.map((part) => part.type === "text" ? part.text : "").join("")

/**
 * Answers by role, and reports usage the way a provider with prompt caching
 * does: the shared brief is written to the cache by the first call and read
 * from it by every later one.
 */
const scriptedProvider = Effect.sync(() => {
  let calls = 0
  const respond = (prompt: Prompt.Prompt) => {
    calls += 1
    const [systemMessage, ...rest] = prompt.content.map(textOf)
    const role = (systemMessage ?? "").split("You are the ")[1]?.replace(".", "") ?? "unknown"
    const task = rest.join(" ")
    const text = answerTo(role, task)
    const cached = Math.ceil(brief.length / 4)
    const uncached = Math.ceil(((systemMessage ?? "").length - brief.length + task.length) / 4) + 8
    const usage: typeof Response.Usage.Encoded = {
      inputTokens: {
        uncached,
        cacheRead: calls === 1 ? 0 : cached,
        cacheWrite: calls === 1 ? cached : 0,
        total: uncached + cached
      },
      outputTokens: { total: Math.ceil(text.length / 4), text: Math.ceil(text.length / 4) }
    }
    return { text, usage }
  }
  return LanguageModel.make({
    generateText: (options) =>
      Effect.sync(() => {
        const { text, usage } = respond(options.prompt)
        return [
          { type: "response-metadata", modelId: `${modelName}-2026-01-15` },
          { type: "text", text },
          { type: "finish", reason: "stop", usage }
        ] satisfies Array<Response.PartEncoded>
      }),
    streamText: (options) =>
      Stream.suspend(() => {
        const { text, usage } = respond(options.prompt)
        const sentences = text.split(/(?<=\. )/)
        return Stream.fromIterable<Response.StreamPartEncoded>([
          { type: "response-metadata", modelId: `${modelName}-2026-01-15` },
          { type: "text-start", id: "draft" },
          ...sentences.map((delta) => ({ type: "text-delta" as const, id: "draft", delta })),
          { type: "text-end", id: "draft" },
          { type: "finish", reason: "stop", usage }
        ])
      })
  })
})

// --- the run ----------------------------------------------------------------

export interface AgentReport {
  readonly name: string
  readonly calls: number
  readonly refused: number
  readonly spent: Snapshot
}

export interface TeamReport {
  readonly agents: ReadonlyArray<AgentReport>
  readonly team: Snapshot
  /** Every broken expectation; empty when the run is sound. */
  readonly problems: ReadonlyArray<string>
  readonly ok: boolean
}

const fmtTokens = (n: number) => n.toLocaleString("en-US")
const fmtUsd = (usd: number) => `$${usd.toFixed(6)}`

const printReport = (r: TeamReport): Effect.Effect<void> => {
  const row = (name: string, calls: string, refused: string, s: Snapshot) =>
    `  ${name.padEnd(11)} ${calls.padStart(5)} ${refused.padStart(8)} ${fmtTokens(s.tokensUsed).padStart(8)} ` +
    `${fmtUsd(s.usdUsed).padStart(10)}   ${fmtTokens(s.tokenCap)} tokens` +
    (Number.isFinite(s.usdCap) ? ` / $${s.usdCap}` : "")
  return Console.log([
    "",
    `  ${"agent".padEnd(11)} ${"calls".padStart(5)} ${"refused".padStart(8)} ${"tokens".padStart(8)} ${"usd".padStart(10)}   cap`,
    ...r.agents.map((a) => row(a.name, String(a.calls), String(a.refused), a.spent)),
    row(
      "team",
      String(r.agents.reduce((n, a) => n + a.calls, 0)),
      String(r.agents.reduce((n, a) => n + a.refused, 0)),
      r.team
    ),
    r.ok
      ? "  check       OK: each agent within its cap, agents add up to the team, nothing held"
      : `  check       FAILED:\n${r.problems.map((p) => `    - ${p}`).join("\n")}`
  ].join("\n"))
}

/** Runs the team against the `Budget` and `LanguageModel` in context. */
export const team = Effect.fn("team")(function*(quiet: boolean) {
  const say = (line: string) => quiet ? Effect.void : Console.log(`  ${line}`)
  const tallies = yield* Effect.forEach(
    agents,
    // Each agent's calls are charged to its own child of the team's budget.
    (agent) => Effect.provide(agent.work(say), Budget.layerChild(agent.name, agent.caps)),
    { concurrency: "unbounded" }
  )
  const teamBudget = yield* Budget
  const reports = yield* Effect.scoped(Effect.forEach(agents, (agent, i) =>
    Effect.map(
      Effect.flatMap(teamBudget.child(agent.name, agent.caps), (child) => child.snapshot),
      (spent): AgentReport => ({ name: agent.name, ...tallies[i]!, spent })
    )))
  const snapshot = yield* teamBudget.snapshot

  const problems: Array<string> = []
  const sum = (f: (s: Snapshot) => number) => reports.reduce((n, r) => n + f(r.spent), 0)
  if (sum((s) => s.tokensUsed) !== snapshot.tokensUsed) problems.push("agents' tokens do not add up to the team's")
  if (Math.round(sum((s) => s.usdUsed) * 1e9) !== Math.round(snapshot.usdUsed * 1e9)) {
    problems.push("agents' dollars do not add up to the team's")
  }
  if (snapshot.tokensReserved !== 0 || snapshot.usdReserved !== 0) problems.push("holds left at the end")
  for (const r of reports) {
    if (r.spent.tokensUsed > r.spent.tokenCap) problems.push(`${r.name} spent past its cap`)
    if (r.calls > 0 && r.spent.usdUsed === 0) problems.push(`${r.name} made calls but spent nothing`)
  }
  if (reports.find((r) => r.name === "critic")?.refused !== 1) problems.push("the critic was never stopped")
  return { agents: reports, team: snapshot, problems, ok: problems.length === 0 } satisfies TeamReport
})

/** Runs the demo with its own team budget and scripted model. */
export const run = (options: { readonly quiet?: boolean | undefined } = {}) => {
  const quiet = options.quiet ?? false
  const TeamBudget = Budget.layer({ name: "team", tokenCap: 40_000, usdCap: 0.05 })
  // `Model.make` names the model in context, so estimates are priced as it.
  const Scripted = Model.make("scripted", modelName, Layer.effect(LanguageModel.LanguageModel, Effect.flatten(scriptedProvider)))
  // The one change to an existing effect/ai program: wrap its model.
  const Budgeted = BudgetedLanguageModel.layer({
    price: Pricing.perMillionTokens(prices),
    maxOutputTokens: 600
  }).pipe(Layer.provide(Scripted))
  return Effect.gen(function*() {
    yield* quiet ? Effect.void : Console.log("Team run: 4 agents, each with a child budget of one team budget (scripted model)\n")
    const report = yield* team(quiet)
    if (!quiet) yield* printReport(report)
    return report
  }).pipe(Effect.provide(Budgeted), Effect.provide(TeamBudget))
}

// --- entry point: only when run directly, not when imported by a test -----

const isMain = process.argv[1] !== undefined &&
  import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href

if (isMain) {
  Effect.runPromise(run()).then(
    (report) => {
      process.exitCode = report.ok ? 0 : 1
    },
    (error: unknown) => {
      console.error(error)
      process.exitCode = 1
    }
  )
}
