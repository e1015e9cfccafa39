/*
 * Text that every store and sink can keep as it is: no NUL (PostgreSQL's
 * text and jsonb refuse it) and no lone surrogate (not Unicode: JSON and
 * UTF-8 cannot carry it). Names, idempotency keys and labels follow it,
 * so no charge makes an entry that a sink can never take.
 */
const unstorable = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/

/** Whether `text` can be stored everywhere. */
export const storable = (text: string): boolean => !unstorable.test(text)

/** What an `InvalidUsage` says of text that is not `storable`. */
export const unstorableReason = "must be Unicode text without NUL characters (\\u0000) or lone surrogates"
