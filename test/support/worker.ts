/**
 * Starts test/support/redisWorker.ts in a Node process of its own: the
 * process, and its first line of output.
 */
import { spawn } from "node:child_process"

export const worker = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) => {
  // Node itself, with tsx as a loader: a SIGKILL then reaches the process
  // that holds the leases, not a wrapper around it.
  const child = spawn(process.execPath, ["--import", "tsx", "test/support/redisWorker.ts", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, ...env }
  })
  let output = ""
  child.stdout.on("data", (chunk) => (output += chunk))
  const firstLine = new Promise<string>((resolve, reject) => {
    child.stdout.on("data", () => output.includes("\n") && resolve(output.split("\n")[0]!))
    child.on("exit", (code) => reject(new Error(`worker exited with ${code} before printing`)))
  })
  return { child, firstLine }
}
