/*
 * Idempotency keys. A record with one charges once: the key
 * `<tree>:r:<id>` says it did, for S.id_keep milliseconds. A reserve with
 * one takes its hold under the id itself (`k:<id>`, never a process's hold
 * id): a retry finds the hold still held, or its settlement once committed
 * (kept S.id_keep too), and takes a new hold only where the last was
 * released or lapsed.
 */
export const ids = `
-- How long a settlement is kept: a hold of an idempotency key ('k:...') as
-- long as its key, any other while its process renews it (renew).
function S.keep_of(id)
  if string.byte(id) == 107 then return S.id_keep end
  return S.keep
end

function S.ids()
  local I = S.I
  if I then return I end
  -- Records' keys seen in this run, and those it charged (written by finish).
  I = { seen = {}, charged = {} }
  S.I = I

  function I.record(keys, t, n, id, labels)
    local seen = I.seen[id]
    if seen == nil then
      seen = redis.call('EXISTS', S.tree .. ':r:' .. id) == 1
      I.seen[id] = seen
    end
    if seen then return 'ok' end
    local result = S.record(keys, t, n, id, labels)
    if result == 'ok' then
      I.seen[id] = true
      I.charged[#I.charged + 1] = id
    end
    return result
  end

  -- The hold under id, as words: { 'h', tokens, nanos } if held, its
  -- settlement if committed; nil if there is none, or it was released.
  function I.kept(id)
    local H = S.holds()
    local v = H.held(id)
    if not v then return nil end
    local ht, hn = H.hold_of(v)
    if ht then return { 'h', ht, hn } end
    if string.byte(v) == 99 then -- 'c'
      local words = {}
      for word in string.gmatch(v, '[^ ]+') do words[#words + 1] = word end
      return words
    end
    return nil
  end

  -- The hold under id if held or committed (I.kept), else a new one, as a
  -- reserve takes it.
  function I.reserve(keys, t, n, ts, ns, id, labels)
    local kept = I.kept(id)
    if kept then return table.concat(kept, ' ') end
    return S.reserve(keys, t, n, ts, ns, id, labels)
  end

  function I.write()
    local tree = S.tree
    for i = 1, #I.charged do redis.call('SET', tree .. ':r:' .. I.charged[i], '1', 'PX', S.id_keep) end
    I.charged = {}
  end

  return I
end
`
