/**
 * The holds this process renews the leases of, by id, each with how many
 * holders it has here: calls with one idempotency key share a hold, and
 * one of them ending must not stop the renewal of the others'.
 */
export class Renewals {
  private readonly holders = new Map<string, number>()

  get size(): number {
    return this.holders.size
  }

  ids(): Array<string> {
    return [...this.holders.keys()]
  }

  add(id: string): void {
    this.holders.set(id, (this.holders.get(id) ?? 0) + 1)
  }

  remove(id: string): void {
    const holders = (this.holders.get(id) ?? 0) - 1
    if (holders > 0) this.holders.set(id, holders)
    else this.holders.delete(id)
  }
}
