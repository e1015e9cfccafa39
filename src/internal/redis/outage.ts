import { Cause, Effect, Exit, Option } from "effect"
import type * as Redis from "effect/persistence/Redis"
import { causeText } from "../causeText.ts"

/*
 * Whether Redis answers, as this store last saw it, so that an outage is
 * said once: one warning when round trips start failing, one info line when
 * one is answered again (not a line per failed operation). A reply that is
 * an error of the script or its arguments is an answer; one saying Redis
 * cannot serve now (loading its data, a busy script, a cluster or replica
 * not ready, out of memory, unable to persist) is an outage.
 */

/** Replies of a Redis that is there but cannot serve. */
const unready = /^(LOADING|BUSY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|READONLY|OOM|MISCONF|NOREPLICAS) /

const messageOf = (cause: unknown): string => cause instanceof Error ? cause.message : String(cause)

/** Whether a failure is an error Redis answered (`ERR ...`, `OOM ...`): the command ran nothing. */
export const isReply = (cause: unknown): boolean => /^[A-Z][A-Z_-]+ /.test(messageOf(cause))

/** Whether a failure means Redis does not serve: no answer, or an answer that it cannot now. */
const isOutage = (cause: unknown): boolean => !isReply(cause) || unready.test(messageOf(cause))

export class Outage {
  /** When round trips started failing (host time, ms); undefined while Redis answers. */
  private since: number | undefined = undefined

  /**
   * What a round trip's end says, if anything: an answer ends an outage, a
   * failure may start one. One interrupted says nothing.
   */
  seen(exit: Exit.Exit<unknown, Redis.RedisError>): Effect.Effect<void> | undefined {
    if (Exit.isSuccess(exit)) return this.answered()
    const error = Cause.findErrorOption(exit.cause)
    return Option.isSome(error) ? this.failed(error.value.cause) : undefined
  }

  /** A round trip was answered: the end of an outage, if one was under way, and its line. */
  private answered(): Effect.Effect<void> | undefined {
    if (this.since === undefined) return undefined
    const millis = Date.now() - this.since
    this.since = undefined
    return Effect.logInfo(`Redis answers again, after ${millis} ms; budget operations go through`)
  }

  /** A round trip failed: the start of an outage, if this is one and none was under way, and its warning. */
  private failed(cause: unknown): Effect.Effect<void> | undefined {
    if (this.since !== undefined || !isOutage(cause)) return undefined
    this.since = Date.now()
    return Effect.logWarning(
      `Redis does not answer (${causeText(cause)}): budget operations fail with BudgetUnavailable ` +
        `until it does; a line will say when it answers again`
    )
  }
}
