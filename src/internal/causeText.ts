// What went wrong, as a person reads it: an error's message, or, for one
// with none (a refused connection to a host of several addresses is an
// AggregateError with an empty message), its errors' messages or its code.
export const causeText = (cause: unknown): string => {
  if (!(cause instanceof Error)) return String(cause)
  if (cause.message !== "") return cause.message
  if (cause instanceof AggregateError && cause.errors.length > 0) return cause.errors.map(causeText).join("; ")
  const code = (cause as { readonly code?: unknown }).code
  return code === undefined ? cause.name : String(code)
}
