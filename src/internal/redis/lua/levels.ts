/*
 * Budgets: a hash `<tree>:n:<path>` each (scripts.ts lists its fields).
 * A run reads each budget once and keeps it in S.levels, by key and in the
 * order read, so every step sees the steps before it; finish writes each
 * back once, only the fields that changed, flagged on the level: du (used),
 * dh (held), dg (generation), dw (window end), dq (the tree's waiters).
 * A budget whose hash has no caps is lost (Redis dropped it: a restart
 * without persistence, an eviction, a flush): nothing is charged, held
 * or written at it until it is made again (ensure). The caps rule is
 * here too: which charges a budget admits.
 */
export const levels = `
S.levels = {}
-- A budget as the run sees it. A window that has ended restarts as it is
-- read, and reading the root tells whether anyone listens for events.
function S.level(key)
  local b = S.levels[key]
  if b then return b end
  local v = redis.call('HMGET', key, 'tu', 'nu', 'tr', 'nr', 'tc', 'nc', 'gen', 'wlen', 'wend', 'lq', 'wq', 'rt', 'mc', 'bk', 'if', 'lf', 'lg', 'rb')
  b = {
    key = key, tu = tonumber(v[1]) or 0, nu = tonumber(v[2]) or 0, tr = tonumber(v[3]) or 0, nr = tonumber(v[4]) or 0,
    tc = tonumber(v[5]) or -1, nc = tonumber(v[6]) or -1, gen = v[7] or '0', wlen = tonumber(v[8]) or 0,
    wend = tonumber(v[9]) or 0, wq = tonumber(v[11]) or 0, lost = not v[5],
    -- its rate and concurrency (rates.ts): rt nil without a rate, mc -1 without a most
    rt = v[12], mc = tonumber(v[13]) or -1, bk = v[14], inf = tonumber(v[15]) or 0,
    -- the generation it was made in (ensure): holds of an older one come from before a loss
    life = tonumber(v[16]) or 0,
    -- on the root: the ledger's outbox bound, false without a ledger (ledger.ts)
    lg = tonumber(v[17]) or false
  }
  -- Rebuilt from the ledger (onStateLost "restore"): 'r<made>' while it is,
  -- and lost until then; 'd<made>' once it was (scripts.ts, restore).
  local rb = v[18]
  if rb then
    local at = tonumber(string.sub(rb, 2))
    if string.byte(rb) == 114 then b.restoring, b.lost = at, true else b.restored = at end
  end
  local levels = S.levels
  levels[key] = b
  levels[#levels + 1] = b
  if key == S.root and S.listening == nil then
    local lq = tonumber(v[10]) or 0
    S.listening = lq > 0 and lq > S.now_ms()
  end
  if b.wlen ~= 0 and b.wend > 0 and S.now_ms() >= b.wend then S.windows().restart(b) end
  return b
end

-- What a read of a chain's counters answers instead of them: its highest
-- lost level, or 'again' while expired holds are left to give back (they
-- would count as held); nil when they can be read.
function S.unreadable(keys)
  local lost = S.lost(keys)
  if lost then return { 'l', tostring(lost) } end
  if S.leases().reap_all().more then return S.finish(S.again) end
  return nil
end

-- A budget's counters as snapshots read them, appended to out: used,
-- held, caps, window, most in flight, in flight, and its rate's buckets as
-- of now, "<axis>:<level>:<capacity>" joined by ";".
function S.counters(b, out)
  local int, buckets = S.int, {}
  if b.rt then
    local R = S.rates()
    for i, r in ipairs(R.of(b)) do
      R.refill(r)
      buckets[i] = r.name .. ':' .. R.float(r.level) .. ':' .. R.float(r.cap)
    end
  end
  local at = #out
  out[at + 1], out[at + 2], out[at + 3], out[at + 4], out[at + 5], out[at + 6] =
    int(b.tu), int(b.nu), int(b.tr), int(b.nr), int(b.tc), int(b.nc)
  out[at + 7], out[at + 8], out[at + 9], out[at + 10], out[at + 11] =
    int(b.wlen), int(b.wend), int(b.mc), int(b.inf), table.concat(buckets, ';')
  return out
end

-- The place in the chain of its highest lost level (making it again makes
-- those below it too), or false; kept on the chain, as no level is lost or
-- made within a run (but by ensure).
function S.lost(keys)
  local found = keys.lost
  if found ~= nil then return found end
  found = false
  for i = #keys, 1, -1 do
    if (S.levels[keys[i]] or S.level(keys[i])).lost then
      found = i
      break
    end
  end
  keys.lost = found
  return found
end

-- What a charge may take an axis up to: its cap, or, without one (-1), the
-- most a counter holds exactly, 2^53 - 1: past it, refused, not rounded.
function S.limit(cap)
  if cap >= 0 then return cap end
  return 9007199254740991
end

-- The limit a charge would take a budget past, 'tokens' or 'usd', or nil:
-- at exactly a limit it fits. Alone, against the limit itself, as if
-- nothing were used or held: past it, no release or reset could ever make
-- room.
function S.over(b, t, n, alone)
  local tu, nu = b.tu + b.tr, b.nu + b.nr
  if alone then tu, nu = 0, 0 end
  tu, nu = tu + t, nu + n
  -- A limit is never below its cap: only a charge past the cap asks it.
  if tu > b.tc and tu > S.limit(b.tc) then return 'tokens' end
  if nu > b.nc and nu > S.limit(b.nc) then return 'usd' end
  return nil
end

-- What a refusal is instead while expired leases the run could not give
-- back are left (leases.ts): the request is to be sent again.
S.again = { 'a' }

-- The first level of the chain a charge is over (see over), or whose rate
-- or concurrency refuses it (rates.ts; holding: a hold): { axis, used +
-- held (for a rate, what its bucket lent), limit, level, kind, retry ms or
-- '-' }, or nil. A charge that would be refused (reap) first gives back
-- expired leases, if there are any: they may be all that stands in its
-- way; S.again if the run's bound left some.
function S.refusal(keys, t, n, alone, reap, holding)
  local levels, over = S.levels, S.over
  for i = 1, #keys do
    local b = levels[keys[i]] or S.level(keys[i])
    local axis = over(b, t, n, alone)
    local beyond = not axis and (b.rt or b.mc >= 0) and S.rates().refusal(b, t, n, alone, holding)
    if axis or beyond then
      if reap then
        if S.leases().reap() then return S.refusal(keys, t, n, alone, reap, holding) end
        if S.L.more then return S.again end
      end
      if axis == 'tokens' then return { axis, S.int(b.tu + b.tr), S.int(S.limit(b.tc)), i, 'cap', '-' } end
      if axis then return { axis, S.int(b.nu + b.nr), S.int(S.limit(b.nc)), i, 'cap', '-' } end
      -- When every rate from here up admits it; never, where a bucket from
      -- here up is smaller than it.
      local retry = '-'
      if beyond[4] == 'rate' then
        local fits = true
        for j = i, #keys do
          local up = levels[keys[j]] or S.level(keys[j])
          if up.rt and S.rates().refusal(up, t, n, true) then fits = false end
        end
        if fits then retry = S.int(S.rates().longest_wait(keys, i, t, n)) end
      end
      return { beyond[1], beyond[2], beyond[3], i, beyond[4], retry }
    end
  end
  return nil
end
`
