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
-- (commits are still written: their usage happened); else nil.
function S.backlogged()
  local lg = S.ledger()
  if not lg then return nil end
  local n = redis.call('XLEN', S.tree .. ':ledger')
  if n >= lg then return 'b ' .. n end
  return nil
end

-- Appends the entry of a charge at the budget of key: its kind, the base of
-- its id (a hold's id, or a record's key or tree), amounts as strings,
-- e '1' for an estimate, labels as JSON text ('' for none).
function S.entry(kind, base, key, ts, ns, to, no, e, labels)
  local b = S.level(key)
  redis.call('XADD', S.tree .. ':ledger', '*', 'k', kind, 'i', base, 'b', S.path_of(key), 't', ts, 'n', ns,
    'to', to, 'no', no, 'e', e, 'l', labels, 'at', S.int(S.now_ms()), 'w', b.wlen ~= 0 and S.int(b.wend) or '')
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
