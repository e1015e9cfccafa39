/*
 * The idempotency keys of one budget tree in memory, each kept for a day
 * from its last use, then dropped: memory grows with the ids of the last
 * day, not with history. All live equally long, so the oldest is always
 * first in the map, and dropping the expired is a walk from its start.
 */

/** How long an idempotency key is kept. */
export const idTtlMillis = 24 * 60 * 60 * 1000

export class Ids<A> {
  private readonly entries = new Map<string, { readonly expires: number; readonly value: A }>()

  /** What the id was last used for, if within a day of `now`. */
  get(id: string, now: number): A | undefined {
    this.drop(now)
    return this.entries.get(id)?.value
  }

  set(id: string, value: A, now: number): void {
    this.entries.delete(id)
    this.entries.set(id, { expires: now + idTtlMillis, value })
  }

  private drop(now: number): void {
    for (const [id, entry] of this.entries) {
      if (entry.expires > now) return
      this.entries.delete(id)
    }
  }
}
