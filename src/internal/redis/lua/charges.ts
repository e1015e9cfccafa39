/*
 * The charges that can be refused, record and reserve: each checks every
 * level of its chain first and changes nothing if one refuses. Commit and
 * release, which are never refused, are H.settle (holds.ts).
 */
export const charges = `
-- A refusal's answer: 'a' to be sent again (S.again), or the refusal's words.
function S.refused(keys, r, t, n)
  if r == S.again then return 'a' end
  return table.concat(S.events().exceeded(keys, r, t, n), ' ')
end

-- Charges t, n to every level of the chain, or to none; with a ledger,
-- its entry too (base: its key, or '').
function S.record(keys, t, n, base, labels)
  local full = S.backlogged()
  if full then return full end
  local r = S.refusal(keys, t, n, false, true, false)
  if r then return S.refused(keys, r, t, n) end
  local levels, E = S.levels, S.listens() and S.events()
  for i = 1, #keys do
    local b = levels[keys[i]] or S.level(keys[i])
    local tu, nu = b.tu, b.nu
    b.tu, b.nu, b.du = tu + t, nu + n, true
    if b.rt then S.rates().take(b, t, n) end
    if E then
      if i == 1 then E.announce({ t = 'Recorded', b = S.path_of(keys[1]), tk = S.int(t), n = S.int(n), lb = S.labels_of(labels) }) end
      E.cross(b, tu, nu)
    end
  end
  -- A record without a key: its id starts with the tree and the root's life,
  -- so a Stream lost and begun again never repeats one.
  if S.ledger() then
    if base == '' then base = S.tree .. '#' .. S.int(S.level(S.root).life) end
    S.entry('record', base, keys[1], S.int(t), S.int(n), '0', '0', '0', labels)
  end
  return 'ok'
end

-- Holds t, n on every level of the chain, or on none, under a lease. A
-- request that fails rather than waits does not line up: it takes what is
-- free now.
function S.reserve(keys, t, n, ts, ns, id, labels)
  local full = S.backlogged()
  if full then return full end
  local r = S.refusal(keys, t, n, false, true, true)
  if r then return S.refused(keys, r, t, n) end
  S.holds().take(keys, t, n, ts, ns, id, labels)
  return 'ok'
end
`
