/*
 * Holds. A hold is the string `<tree>:h:<id>`, "h <tokens> <nanos>
 * <gen,...> <path>": what it holds, the generation of each level of its
 * chain when it was taken, and its budget. Its lease is its expiry in the
 * sorted set `<tree>:leases`. Settling replaces it with its settlement,
 * "c <tokens> <nanos> <tokens over> <nanos over>" or "r", kept a while
 * (S.keep_of) so that a retried commit charges once.
 *
 * A run reads each hold once (a batch reads those it settles in one call)
 * and keeps it in H.values, false if there is none; H.write writes those
 * it changed (H.changed, in order) in a few calls, and their leases: a
 * hold's until H.expiry, none for a settlement or a hold given back.
 */
export const holds = `
function S.holds()
  local H = S.H
  if H then return H end
  H = { values = {}, changed = {}, unleased = {} }
  S.H = H

  -- A hold's value, false if there is none.
  function H.held(id)
    local v = H.values[id]
    if v == nil then
      v = redis.call('GET', S.tree .. ':h:' .. id)
      H.values[id] = v
    end
    return v
  end
  -- A hold's tokens, nanos, generations and path, as strings; nil for a
  -- settlement.
  function H.hold_of(v) return string.match(v, '^h (%d+) (%d+) ([^ ]+) (.*)$') end

  -- The generations of a chain's levels, joined as a hold writes them; kept
  -- on the chain, as no generation changes once a run has read its level
  -- (but in reset, which takes no holds).
  function H.gens_of(keys)
    local g = keys.gens
    if g then return g end
    if #keys == 1 then
      g = S.level(keys[1]).gen
    else
      local gens = {}
      for i = 1, #keys do gens[i] = S.level(keys[i]).gen end
      g = table.concat(gens, ',')
    end
    keys.gens = g
    return g
  end

  -- Takes a hold of t, n (ts, ns as they came) on every level of the chain,
  -- leased for S.lease milliseconds from now; with a ledger, its labels
  -- (JSON text, '' for none) are kept for its settlement's entry.
  function H.take(keys, t, n, ts, ns, id, labels)
    S.keep_labels(id, labels)
    local levels = S.levels
    for i = 1, #keys do
      local b = levels[keys[i]] or S.level(keys[i])
      b.tr, b.nr, b.dh, b.inf = b.tr + t, b.nr + n, true, b.inf + 1
      if b.rt then S.rates().take(b, t, n) end
    end
    local path = keys.path
    if not path then
      path = S.path_of(keys[1])
      keys.path = path
    end
    H.values[id] = 'h ' .. ts .. ' ' .. ns .. ' ' .. (keys.gens or H.gens_of(keys)) .. ' ' .. path
    H.changed[#H.changed + 1] = id
    if S.listens() then S.events().announce({ t = 'Reserved', b = path, tk = ts, n = ns, lb = S.labels_of(labels) }) end
  end

  -- Gives back a hold of ht, hn taken in the generations gens: all of it at
  -- each level of the chain that keeps the generation it was taken in,
  -- nothing at a level reset since. A commit (t given) also charges t, n at
  -- every level, past a cap if it must; what it takes beyond the hold and
  -- the room left is the overage, the most of any level's, returned.
  -- before, if given, keeps each level's use before the charge. Only the
  -- places in only, if given; none that is lost, whose state is gone: the
  -- places of those a commit would have charged are returned third. A
  -- hold still held (live) also gives back its place in flight, and its
  -- rates what it held; any commit takes its actual from them.
  function H.give_back(keys, ht, hn, gens, t, n, before, only, live)
    local levels, max = S.levels, math.max
    local each = gens and gens ~= (keys.gens or H.gens_of(keys)) and string.gmatch(gens, '[^,]+')
    local tover, nover, skipped = 0, 0, nil
    for i = 1, #keys do
      local b = levels[keys[i]] or S.level(keys[i])
      local et, en = ht, hn
      local gen = each and each()
      if gen and b.gen ~= gen then et, en = 0, 0 end
      if only and not only[i] then
        -- charged before
      elseif b.lost and not b.restoring then
        if t then
          skipped = skipped or {}
          skipped[#skipped + 1] = i
        end
      else
        if t then
          if before then before[i] = { b.tu, b.nu } end
          if b.tc >= 0 then tover = max(tover, t - et - max(0, b.tc - b.tu - b.tr)) end
          if b.nc >= 0 then nover = max(nover, n - en - max(0, b.nc - b.nu - b.nr)) end
          b.tu, b.nu, b.du = b.tu + t, b.nu + n, true
        end
        b.tr, b.nr, b.dh = b.tr - et, b.nr - en, true
        -- Its place in flight and its rate's tokens were taken in this
        -- life of the budget, unless it was made again since (a loss).
        local held = live and (not gen or tonumber(gen) >= b.life)
        if held then b.inf = math.max(0, b.inf - 1) end
        if b.rt then
          local held_t, held_n = held and ht or 0, held and hn or 0
          S.rates().give(b, held_t - (t or 0), held_n - (n or 0))
        end
      end
    end
    return tover, nover, skipped
  end

  -- Gives back the hold id, which no one will settle (its lease ran out:
  -- expired; or the waiting request that took it gave up unanswered):
  -- deleted, with no settlement kept. False if there is no such hold.
  function H.drop(id, expired)
    local v = H.held(id)
    local ht, hn, gens, path = nil, nil, nil, nil
    if v then ht, hn, gens, path = H.hold_of(v) end
    if not ht then return false end
    H.values[id] = false
    H.changed[#H.changed + 1] = id
    local keys = S.waiting().chain_of(path)
    H.give_back(keys, tonumber(ht), tonumber(hn), gens, nil, nil, nil, nil, true)
    local labels = (S.ledger() or S.listens()) and S.hold_labels(id)
    if labels then
      -- Its process died: a zero charge that says so, the call's usage unknown.
      if expired and S.ledger() then S.entry('expired', id, keys[1], '0', '0', '0', '0', '0', labels) end
      redis.call('DEL', S.tree .. ':hl:' .. id)
    end
    S.wake_all(keys)
    if S.listens() then S.events().announce({ t = 'Released', b = path, tk = ht, n = hn, lb = S.labels_of(labels) }) end
    return true
  end

  -- Settles the hold id of the chain: a commit of t, n (ts, ns as they
  -- came; e '1' if they were estimated; given, its labels as the client
  -- knows them), or a release (no t). A commit of a
  -- hold nobody holds (released, lapsed, unknown) still charges, as excess:
  -- usage that happened is never dropped. Returns the settlement; a hold
  -- committed before keeps its first, and a release returns any. A lost
  -- level is skipped: a commit charges the levels kept, and its settlement
  -- lists the places it skipped, charged when it is sent again once they
  -- are made again; until then it answers 'l <highest skipped>'.
  function H.settle(keys, id, t, n, ts, ns, e, given)
    local live = false
    local v = H.values[id]
    if v == nil then v = H.held(id) end
    local ht, hn, gens, path, only, first = nil, nil, nil, nil, nil, nil
    if v then
      ht, hn, gens, path = H.hold_of(v)
      live = ht ~= nil
      if not ht then
        if not t then return v end
        local cts, cns, cto, cno, skipped, at = string.match(v, '^c (%d+) (%d+) (%d+) (%d+) ([%d,]+) (%d+)$')
        if skipped then
          -- Its first charge again, where it was skipped; but not at a level
          -- rebuilt from the ledger since, which counted its entry (at 0:
          -- none was written, with the ledger's switch lost: it is written
          -- now, and counted at every level).
          ts, ns, t, n, e, only, first = cts, cns, tonumber(cts), tonumber(cns), nil, {}, at
          for i in string.gmatch(skipped, '%d+') do
            local b = S.levels[keys[tonumber(i)]] or S.level(keys[tonumber(i)])
            local since = b.restored or b.restoring
            if at == '0' or not (since and since > tonumber(at)) then only[tonumber(i)] = true end
          end
          ht, hn = 0, 0
        elseif v ~= 'r' then
          return v
        end
      else
        ht, hn = tonumber(ht), tonumber(hn)
      end
    end
    -- A commit past what a counter holds exactly fails, and changes nothing.
    if t then
      for i = 1, #keys do
        local b = S.levels[keys[i]] or S.level(keys[i])
        if b.tu + t > 9007199254740991 then return 'i tokens ' .. i end
        if b.nu + n > 9007199254740991 then return 'i usd ' .. i end
      end
    end
    -- The root first: it says whether anyone listens.
    if S.listening == nil then S.level(S.root) end
    local listens = S.listening
    local before = t and listens and {}
    local s, answer, to, no = 'r', nil, nil, nil
    -- Its ledger entry is written in this run, unless an earlier run of it
    -- wrote it; first: when that was ('0': not yet).
    local entry = t and (not only or first == '0') and S.ledger()
    if entry then first = S.int(S.now_ms()) elseif not only then first = '0' end
    if t then
      local tover, nover, skipped = H.give_back(keys, ht or 0, hn or 0, gens, t, n, before, only, live)
      if only then
        local _, _, cto, cno = string.match(v, '^c (%d+) (%d+) (%d+) (%d+)')
        tover, nover = math.max(tover, tonumber(cto)), math.max(nover, tonumber(cno))
      end
      to, no = S.int(tover), S.int(nover)
      s = 'c ' .. ts .. ' ' .. ns .. ' ' .. to .. ' ' .. no
      if skipped then
        -- When its entry was written, kept through completions.
        s = s .. ' ' .. table.concat(skipped, ',') .. ' ' .. first
        answer = 'l ' .. skipped[#skipped]
      end
    elseif ht then
      H.give_back(keys, ht, hn, gens, nil, nil, nil, nil, true)
    end
    H.values[id] = s
    H.changed[#H.changed + 1] = id
    local labels = (S.ledger() or listens) and (given and given ~= '' and given or S.hold_labels(id))
    if labels then
      -- Its entry, in this run; its labels kept as long as its settlement,
      -- for a commit that comes after a release.
      if entry then S.entry('commit', id, keys[1], ts, ns, to, no, e or '0', labels) end
      if labels ~= '' then redis.call('PEXPIRE', S.tree .. ':hl:' .. id, S.keep_of(id)) end
    end
    if listens then
      local E = S.events()
      if t then
        if not only then
          E.announce({ t = 'Committed', b = S.path_of(keys[1]), tk = ts, n = ns, to = to, no = no, e = e, lb = S.labels_of(labels) })
        end
        for i = 1, #keys do
          if before[i] then E.cross(S.level(keys[i]), before[i][1], before[i][2]) end
        end
      elseif ht then
        E.announce({ t = 'Released', b = path, tk = S.int(ht), n = S.int(hn), lb = S.labels_of(labels) })
      end
    end
    S.wake_all(keys)
    return answer or s
  end

  -- Writes what the run changed: holds in one call, settlements each with
  -- their expiry, holds given back in one; leases in one call each way.
  -- (A hold changed twice is written twice, to the same end.)
  function H.write()
    local tree, values, changed, remove = S.tree, H.values, H.changed, H.unleased
    local set, gone, add, at, expiry = nil, nil, nil, 0, nil
    for i = 1, #changed do
      local id = changed[i]
      local v, key = values[id], tree .. ':h:' .. id
      if not v then
        gone = gone or {}
        gone[#gone + 1] = key
        remove[#remove + 1] = id
      elseif string.byte(v) == 104 then -- 'h'
        if not set then
          set, add, expiry = {}, {}, S.int(S.now_ms() + S.lease)
          H.expiry = expiry
        end
        set[at + 1], set[at + 2], add[at + 1], add[at + 2] = key, v, expiry, id
        at = at + 2
      else
        -- One that still owes lost levels their charge is kept as an id is:
        -- the commit that completes it may come late (after a reset).
        local keep = S.keep_of(id)
        if S.id_keep and string.find(v, '^c %d+ %d+ %d+ %d+ [%d,]+ %d+$') then keep = math.max(keep, S.id_keep) end
        redis.call('SET', key, v, 'PX', keep)
        remove[#remove + 1] = id
      end
    end
    if set then redis.call('MSET', unpack(set)) end
    if gone then redis.call('DEL', unpack(gone)) end
    if add then redis.call('ZADD', tree .. ':leases', unpack(add)) end
    if #remove > 0 then redis.call('ZREM', tree .. ':leases', unpack(remove)) end
    H.changed, H.unleased = {}, {}
  end

  return H
end
`
