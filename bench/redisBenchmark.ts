/**
 * `redis-benchmark`, the C client that ships with Redis and does next to
 * nothing per request: how the Redis reports measure a script with no Node
 * client in the way. Missing where `redis-tools` is not installed; the
 * reports then say so and the bench runs on.
 */
import { Effect } from "effect"
import type * as Redis from "effect/persistence/Redis"
import { execFile } from "node:child_process"
import { url } from "./redis.ts"

/** `redis-benchmark` replaces it in each request with a random number: a fresh hold id. */
export const random = "__rand_int__"

/** Requests per second of `requests` sends of `args` from `clients` connections, each waiting for its reply; or why not. */
export const requestsPerSecond = (
  args: ReadonlyArray<string>,
  load: { readonly clients: number; readonly requests: number },
  at: string = url
) =>
  Effect.callback<number, string>((resume) => {
    execFile(
      "redis-benchmark",
      ["-u", at, "-q", "-c", String(load.clients), "-n", String(load.requests), "-r", "100000000", ...args],
      (error, stdout) => {
        const rps = /([\d.]+) requests per second/.exec(stdout)?.[1]
        if (rps !== undefined) return resume(Effect.succeed(Number(rps)))
        resume(Effect.fail(
          error?.code === "ENOENT" ? "redis-benchmark is not installed (Debian: redis-tools)" : error?.message ?? stdout
        ))
      }
    )
  })

/** The EVALSHA arguments of `script` for `params`, loaded once. */
export const evalsha = <P extends ReadonlyArray<unknown>>(
  redis: Redis.Redis["Service"],
  script: Redis.Script<{ readonly params: P; readonly result: unknown }>,
  ...params: P
) =>
  Effect.map(redis.send<string>("SCRIPT", "LOAD", script.lua), (sha) => [
    "evalsha",
    sha,
    String(script.numberOfKeys(...params)),
    ...script.params(...params).map(String)
  ])
