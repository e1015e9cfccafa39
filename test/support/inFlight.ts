/**
 * When a Redis store's round trips have landed: its client counts the
 * commands it sent that have no reply yet, and a store's `settle` polls
 * until there are none, before and after a barrier through pub/sub. The
 * condition itself, where a fixed wait would only guess how long it takes.
 */
import { Effect } from "effect"
import type * as Redis from "effect/persistence/Redis"
import { BudgetStoreContract } from "../../src/testing.ts"
import { eventually } from "./poll.ts"

/** Commands sent through `counting` clients that have no reply yet, and subscriptions being made. */
let inFlight = 0

const counted = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.suspend(() => {
    inFlight++
    return Effect.ensuring(effect, Effect.sync(() => inFlight--))
  })

/** `redis`, counting its commands while they are in flight. */
export const counting = (redis: Redis.Redis["Service"]): Redis.Redis["Service"] => ({
  send: (command, ...args) => counted(redis.send(command, ...args)),
  eval: (script) => (...params) => counted(redis.eval(script)(...params)),
  subscribe: (channel) => counted(redis.subscribe(channel)),
  reserve: Effect.map(redis.reserve, (connection) => ({
    send: (command, ...args) => counted(connection.send(command, ...args)),
    eval: (script) => (...params) => counted(connection.eval(script)(...params))
  }))
})

/** Fibers that can move have moved, and no command of a `counting` client awaits its reply. */
const quiet = Effect.andThen(BudgetStoreContract.yields, Effect.sync(() => inFlight === 0))

/**
 * A store's `settle`: polls until no command of a `counting` client is in
 * flight, then again once `barrier` has passed (a marker through pub/sub:
 * Redis sent every message published before it first), so a round trip
 * that a message started (a woken waiter's) is awaited too.
 */
export const settleThrough = (barrier: Effect.Effect<void>): Effect.Effect<void> =>
  eventually(
    "every round trip and message of the Redis stores landed",
    Effect.gen(function*() {
      if (!(yield* quiet)) return false
      yield* barrier
      return yield* quiet
    }),
    { every: "1 millis" }
  )
