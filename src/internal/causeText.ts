// What went wrong, as a person reads it: an error's message, or, for one
// with none (a refused connection to a host of several addresses is an
// AggregateError with an empty message), its errors' messages or its code;
// then what caused it, if it says more (a SqlError's "Query failed" says
// nothing of the server's own words). Never throws, whatever it is given.
export const causeText = (cause: unknown): string => {
  if (!(cause instanceof Error)) return plain(cause)
  const own = ownText(cause)
  const inner = cause.cause
  if (inner === undefined || inner === null) return own
  const more = causeText(inner)
  return more === "" || own.includes(more) ? own : `${own}: ${more}`
}

const ownText = (error: Error): string => {
  if (error.message !== "") return error.message
  if (error instanceof AggregateError && error.errors.length > 0) return error.errors.map(causeText).join("; ")
  const code = (error as { readonly code?: unknown }).code
  return code === undefined ? error.name : String(code)
}

// An object with no prototype has no toString: String() would throw.
const plain = (value: unknown): string => {
  if (typeof value === "object" && value !== null && Object.getPrototypeOf(value) === null) {
    return JSON.stringify(value) ?? "[object]"
  }
  return String(value)
}
