import { Cron } from "effect"
import type { Settings } from "../BudgetStore.ts"

/** A validated window: its length in milliseconds, or a cron schedule. */
export type WindowSchedule = NonNullable<Settings["window"]>

/**
 * The end of the window that contains `now`, in epoch milliseconds: the next
 * multiple of a duration since the Unix epoch (so "1 day" ends at midnight
 * UTC), or the next time a cron schedule fires after `now`.
 */
export const windowEnd = (schedule: WindowSchedule, now: number): number =>
  typeof schedule === "number"
    ? (Math.floor(now / schedule) + 1) * schedule
    : Cron.next(schedule, now).getTime()
