/*
 * The ledger (docs/ledger.md). A tree with an outbox bound, the key
 * `<tree>:lg` (set by ensure when a store with a Ledger.Sink opens it, and
 * copied to its root's hash, `lg`, where every run reads it for free),
 * keeps an outbox, the Stream `<tree>:ledger`: each charge appends its
 * entry in the same run, whichever process runs it, so a charge and its
 * entry are one atomic step. A root whose hash was lost still has its
 * tree's key: a commit on it writes its entry, and a root made again
 * takes the bound back.
 * Drainers (drain.ts) hand entries to the sink and delete them. A hold's
 * labels wait in `<tree>:hl:<id>` for its settlement, kept as long as it.
 */
export const ledger = `
-- The outbox's bound, or false without a ledger.
function S.ledger()
  local lg = S.lg
  if lg == nil then
    local root = S.level(S.root)
    if root.lost then lg = tonumber(redis.call('GET', S.tree .. ':lg')) or false else lg = root.lg end
    S.lg = lg
  end
  return lg
end

-- 'b <entries>' when the outbox is at its bound: new charges are refused
-- (commits are still written: their usage happened); else nil. Its length
-- is read once a run, and counted on as the run appends.
function S.backlogged()
  local lg = S.ledger()
  if not lg then return nil end
  if not S.outbox then S.outbox = redis.call('XLEN', S.tree .. ':ledger') end
  if S.outbox >= lg then return 'b ' .. S.outbox end
  return nil
end

-- Appends the entry of a charge at the budget of key: its kind, the base of
-- its id (a hold's id, or a record's key or tree), amounts as strings,
-- e '1' for an estimate, labels as JSON text ('' for none). One field, its
-- values joined by NUL (which no name, id or label holds): an entry of one
-- field costs Redis a third of one of eleven, to write and to read.
function S.entry(kind, base, key, ts, ns, to, no, e, labels)
  local b = S.level(key)
  redis.call('XADD', S.tree .. ':ledger', '*', 'e', table.concat({ kind, base, S.path_of(key), ts, ns, to, no, e, labels,
    S.int(S.now_ms()), b.wlen ~= 0 and S.int(b.wend) or '' }, '\\0'))
  if S.outbox then S.outbox = S.outbox + 1 end
end

-- A hold's labels, kept for its settlement's entry and events while the
-- tree keeps a ledger or someone listens (a day at most: a hold held
-- longer settles without them).
function S.keep_labels(id, labels)
  if labels and labels ~= '' and (S.ledger() or S.listens()) then
    redis.call('SET', S.tree .. ':hl:' .. id, labels, 'PX', 86400000)
  end
end
function S.hold_labels(id) return redis.call('GET', S.tree .. ':hl:' .. id) or '' end

-- Labels for an event: a table cjson writes as an object, nil for none.
function S.labels_of(labels)
  if labels == nil or labels == '' then return nil end
  return cjson.decode(labels)
end
`
