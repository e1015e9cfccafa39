import * as Redis from "effect/persistence/Redis"

/*
 * The Lua side of the Redis store. Every operation is atomic in Redis, on
 * Redis's clock (`TIME`). The hot ones (record, reserve, commit, release)
 * run in batches: one `batch` script runs every operation a process sends
 * together, each in turn (batch.ts). The other scripts get the chain
 * of the budget they act on as KEYS, from that budget up to the root; every
 * script gets the tree's key as ARGV[1]. A budget is a hash `<tree>:n:<path>`:
 *
 *   tu, nu   tokens and nano-dollars used
 *   tr, nr   tokens and nano-dollars held
 *   tc, nc   caps; -1 when unbounded
 *   gen      bumped by every reset; holds of an older generation are stale
 *   wlen     window length in milliseconds; -1 for a cron window, 0 for none
 *   wend     when the current window ends, in epoch milliseconds; 0 if unknown
 *   wid      which window: its length, or its cron schedule
 *   th       the thresholds that raise ThresholdCrossed, comma-separated
 *
 * and the root's hash also says what the whole tree needs:
 *
 *   lq       until when some process listens for events (epoch ms)
 *   wq       how many requests wait in the tree's lines
 *   seq      the last ticket handed to a waiting request
 *
 * A cron window's coming ends are in the sorted set `<tree>:b:<path>`:
 * processes that open the budget compute them from the schedule, and the
 * scripts take the next one from there when a window ends, on Redis's clock.
 *
 * A hold is a string `<tree>:h:<id>`, "h <tokens> <nanos> <gen,...> <path>",
 * with a lease: its expiry in the sorted set `<tree>:leases`. Settling
 * replaces it with the settlement, "c <tokens> <nanos> <overage> <overage>"
 * or "r", kept for a while, so a retried commit charges once. Expired leases
 * are given back whenever they stand in a request's way, and by snapshots.
 *
 * Waiting requests line up first come, first served across every process:
 * each has a ticket (`seq`) in the line `<tree>:q:<path>` of the first
 * budget of its chain that holds it back, described at `<tree>:w:<ticket>`
 * and kept alive by a lease in `<tree>:tickets`. Scripts that free room in
 * a budget look at its line's head; one that now fits is woken with its
 * ticket on `<tree>:wake`, one held back higher up moves to that line.
 *
 * All keys of one tree share the hash tag of `<tree>`, so the scripts stay
 * within one Redis Cluster slot. Integers leave Lua formatted with %.0f,
 * exact up to 2^53. Every `redis.call` costs about a microsecond, so the
 * common paths make as few as they can: a budget is read once per script
 * run, however many operations of a batch touch it.
 */
const prelude = `
-- The state of one run, and the functions over it. Each function reaches
-- the rest through S alone: a script makes all its functions anew on every
-- run, and a closure costs more to make for every local it captures. The
-- root's key is the last of KEYS, for every script.
local S = { tree = ARGV[1], root = KEYS[#KEYS], levels = {}, restarted = {} }
function S.now_ms()
  if S.now == nil then
    local t = redis.call('TIME')
    S.now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return S.now
end
-- %.0f is exact up to 2^53; 0 first, as -0 would read "-0".
function S.int(x) if x == 0 then return '0' end return string.format('%.0f', x) end
function S.path_of(key) return string.sub(key, #S.tree + 4) end

-- Events are published only while some process listens; callers ask
-- first, so no one builds an event no one hears.
function S.listens()
  if S.listening == nil then
    local lq = tonumber(redis.call('HGET', S.root, 'lq') or '0')
    S.listening = lq > 0 and lq > S.now_ms()
  end
  return S.listening
end
function S.announce(event) redis.call('PUBLISH', S.tree .. ':events', cjson.encode(event)) end

-- Budgets are read once per run and kept, so every step sees the changes
-- of the steps before it. A window that has ended restarts as it is read.
function S.level(key)
  local b = S.levels[key]
  if b then return b end
  local v = redis.call('HMGET', key, 'tu', 'nu', 'tr', 'nr', 'tc', 'nc', 'gen', 'wlen', 'wend', 'lq', 'wq')
  b = {
    key = key, tu = tonumber(v[1]) or 0, nu = tonumber(v[2]) or 0, tr = tonumber(v[3]) or 0, nr = tonumber(v[4]) or 0,
    tc = tonumber(v[5]) or -1, nc = tonumber(v[6]) or -1, gen = v[7] or '0', wlen = tonumber(v[8]) or 0,
    wend = tonumber(v[9]) or 0, wq = tonumber(v[11]) or 0
  }
  S.levels[key] = b
  if key == S.root and S.listening == nil then
    local lq = tonumber(v[10]) or 0
    S.listening = lq > 0 and lq > S.now_ms()
  end
  if b.wlen ~= 0 and b.wend > 0 and S.now_ms() >= b.wend then S.slow().restart(b) end
  return b
end
function S.save(b)
  local int = S.int
  redis.call('HSET', b.key, 'tu', int(b.tu), 'nu', int(b.nu), 'tr', int(b.tr), 'nr', int(b.nr))
end
function S.refused(b, t, n)
  if b.tc >= 0 and b.tu + b.tr + t > b.tc then return { 'tokens', S.int(b.tu + b.tr), S.int(b.tc) } end
  if b.nc >= 0 and b.nu + b.nr + n > b.nc then return { 'usd', S.int(b.nu + b.nr), S.int(b.nc) } end
  return nil
end
-- Holds: "h <tokens> <nanos> <gen,...> <path>"; anything else is a settlement.
function S.hold_of(v)
  local t, n, gens, path = string.match(v, '^h (%d+) (%d+) ([^ ]+) (.*)$')
  if not t then return nil end
  local g = {}
  for x in string.gmatch(gens, '[^,]+') do table.insert(g, x) end
  return { t = tonumber(t), n = tonumber(n), gens = g, path = path }
end

-- Looks at the lines of these budgets, if anyone waits in the tree.
function S.wake_all(keys)
  if S.level(S.root).wq > 0 then S.slow().wake_all(keys) end
end
-- After every operation: lines of budgets whose window restarted are
-- looked at.
function S.settle()
  while #S.restarted > 0 do
    local keys = S.restarted
    S.restarted = {}
    S.wake_all(keys)
  end
end
-- Every run ends here, and the woken tickets are told.
function S.finish(result)
  S.settle()
  local more = S.more
  if more and #more.woken > 0 then redis.call('PUBLISH', S.tree .. ':wake', table.concat(more.woken, ' ')) end
  return result
end

-- The first level of the chain the charge does not fit, after giving back
-- expired leases if that could change the answer.
function S.refusal(keys, t, n)
  for i = 1, #keys do
    local r = S.refused(S.level(keys[i]), t, n)
    if r then
      table.insert(r, i)
      return r
    end
  end
  return nil
end
function S.check(keys, t, n)
  local r = S.refusal(keys, t, n)
  if r and S.slow().reap() then r = S.refusal(keys, t, n) end
  return r
end

function S.slow()
  if S.more then return S.more end
  local tree, root, now_ms, int, path_of = S.tree, S.root, S.now_ms, S.int, S.path_of
  local listens, announce, level, hold_of, wake_all = S.listens, S.announce, S.level, S.hold_of, S.wake_all
  local function key_of(path) return tree .. ':n:' .. path end
  local function line_of(path) return tree .. ':q:' .. path end
  local function ticket_of(ticket) return tree .. ':w:' .. ticket end

  -- When the window that holds now ends: the next multiple of its length,
  -- or its cron schedule's next end that a process has written; 0 if none.
  local function window_end(b)
    if b.wlen > 0 then return (math.floor(now_ms() / b.wlen) + 1) * b.wlen end
    if b.wlen == 0 then return 0 end
    local ends = tree .. ':b:' .. path_of(b.key)
    redis.call('ZREMRANGEBYSCORE', ends, '-inf', int(now_ms()))
    return tonumber(redis.call('ZRANGE', ends, 0, 0)[1] or '0')
  end
  local function restart(b)
    b.tu, b.nu, b.tr, b.nr = 0, 0, 0, 0
    b.wend = window_end(b)
    b.gen = tostring(redis.call('HINCRBY', b.key, 'gen', 1))
    redis.call('HSET', b.key, 'tu', 0, 'nu', 0, 'tr', 0, 'nr', 0, 'wend', int(b.wend))
    if listens() then announce({ t = 'Reset', b = path_of(b.key), we = int(b.wend) }) end
    table.insert(S.restarted, b.key)
  end

  local function exceeded(keys, r, t, n)
    if listens() then
      announce({ t = 'Exceeded', b = path_of(keys[r[4]]), a = r[1], k = r[2], c = r[3], tk = int(t), n = int(n) })
    end
    return { 'x', r[1], r[2], r[3], r[4] }
  end
  local function too_big(b, t, n)
    if b.tc >= 0 and t > b.tc then return { 'tokens', int(b.tu + b.tr), int(b.tc) } end
    if b.nc >= 0 and n > b.nc then return { 'usd', int(b.nu + b.nr), int(b.nc) } end
    return nil
  end

  -- ThresholdCrossed for each threshold the charge took a budget's use
  -- past: tokens first, then dollars.
  local function cross(b, tu, nu)
    local ths = redis.call('HGET', b.key, 'th') or ''
    local function on(axis, before, used, cap)
      if cap < 0 then return end
      for th in string.gmatch(ths, '[^,]+') do
        local f = tonumber(th)
        if before < f * cap and used >= f * cap then
          announce({ t = 'ThresholdCrossed', b = path_of(b.key), a = axis, th = th, u = int(used), c = int(cap) })
        end
      end
    end
    on('tokens', tu, b.tu, b.tc)
    on('usd', nu, b.nu, b.nc)
  end

  local function settlement_of(v)
    local s = {}
    for x in string.gmatch(v, '[^ ]+') do table.insert(s, x) end
    return s
  end

  -- The keys of a budget's chain, from the budget up to the root.
  local function chain_of(path)
    local keys, cuts = { key_of(path) }, {}
    for at in string.gmatch(path, '()/') do table.insert(cuts, at) end
    for i = #cuts, 1, -1 do table.insert(keys, key_of(string.sub(path, 1, cuts[i] - 1))) end
    return keys
  end

  -- Gives a hold back at each level whose generation it still has.
  local function give_back(h)
    local keys = chain_of(h.path)
    for i, key in ipairs(keys) do
      local b = level(key)
      if b.gen == h.gens[i] then
        b.tr, b.nr = b.tr - h.t, b.nr - h.n
        redis.call('HSET', key, 'tr', int(b.tr), 'nr', int(b.nr))
      end
    end
    return keys
  end

  -- Waiting. Tickets to tell, in order, and as a set.
  local woken, told = {}, {}
  local function fits(b, t, n)
    return (b.tc < 0 or b.tu + b.tr + t <= b.tc) and (b.nc < 0 or b.nu + b.nr + n <= b.nc)
  end
  local function head_of(path)
    local head = redis.call('ZRANGE', line_of(path), 0, 0)
    return head[1]
  end
  -- The first budget of a waiter's chain that holds it back: one it does not
  -- fit, or whose line has an earlier ticket in it.
  local function holds_back(seq, t, n, path)
    for _, key in ipairs(chain_of(path)) do
      local head = head_of(path_of(key))
      if head and tonumber(head) < seq then return key end
      if not fits(level(key), t, n) then return key end
    end
    return nil
  end
  local function move(ticket, from, to)
    redis.call('ZREM', line_of(from), ticket)
    redis.call('ZADD', line_of(to), ticket, ticket)
    redis.call('HSET', ticket_of(ticket), 'l', to)
  end
  -- Wakes the head of a budget's line if it now fits its whole chain; a head
  -- held back higher up moves to that line, and the next head is considered.
  local function wake(path)
    local at = key_of(path)
    while true do
      local head = head_of(path)
      if not head or told[head] then return end
      local w = redis.call('HMGET', ticket_of(head), 't', 'n', 'o')
      if not w[1] then
        -- A ticket nothing is known of cannot be served: it leaves.
        redis.call('ZREM', line_of(path), head)
        redis.call('ZREM', tree .. ':tickets', head)
        local r = level(root)
        r.wq = r.wq - 1
        redis.call('HSET', root, 'wq', int(r.wq))
      else
        local blocker = holds_back(tonumber(head), tonumber(w[1]), tonumber(w[2]), w[3])
        if blocker == at then return end
        if blocker == nil then
          told[head] = true
          table.insert(woken, head)
          return
        end
        move(head, path, path_of(blocker))
      end
    end
  end
  local function wake_lines(keys)
    for _, key in ipairs(keys) do wake(path_of(key)) end
  end
  -- A ticket leaving its line for good; the line may serve its next head.
  local function leave(ticket)
    local at = redis.call('HGET', ticket_of(ticket), 'l')
    if not at then return end
    redis.call('ZREM', line_of(at), ticket)
    redis.call('ZREM', tree .. ':tickets', ticket)
    redis.call('DEL', ticket_of(ticket))
    local r = level(root)
    r.wq = r.wq - 1
    redis.call('HSET', root, 'wq', int(r.wq))
    wake(at)
  end

  -- Gives back the holds and tickets whose leases ran out; true if any.
  local function reap()
    local expired = redis.call('ZRANGEBYSCORE', tree .. ':leases', '-inf', int(now_ms()), 'LIMIT', 0, 64)
    for _, id in ipairs(expired) do
      redis.call('ZREM', tree .. ':leases', id)
      local hkey = tree .. ':h:' .. id
      local v = redis.call('GET', hkey)
      local h = v and hold_of(v)
      if h then
        redis.call('DEL', hkey)
        wake_all(give_back(h))
        if listens() then announce({ t = 'Released', b = h.path, tk = int(h.t), n = int(h.n) }) end
      end
    end
    if level(root).wq > 0 then
      for _, ticket in ipairs(redis.call('ZRANGEBYSCORE', tree .. ':tickets', '-inf', int(now_ms()), 'LIMIT', 0, 64)) do
        leave(ticket)
      end
    end
    return #expired > 0
  end

  S.more = {
    window_end = window_end, restart = restart, exceeded = exceeded, too_big = too_big, cross = cross, settlement_of = settlement_of,
    line_of = line_of, ticket_of = ticket_of, give_back = give_back, holds_back = holds_back, move = move,
    wake = wake, wake_all = wake_lines, leave = leave, reap = reap, woken = woken
  }
  return S.more
end
local tree, root, int, path_of, listens, announce = S.tree, S.root, S.int, S.path_of, S.listens, S.announce
local level, save, hold_of, wake_all, settle, finish, refusal, check, slow =
  S.level, S.save, S.hold_of, S.wake_all, S.settle, S.finish, S.refusal, S.check, S.slow
local now_ms = S.now_ms
`

type Refusal = readonly [axis: "tokens" | "usd", taken: string, cap: string, level: number]

/** `["ok"]`, or `["x", axis, used + reserved, cap, level]` for the first level that refuses. */
export type ChargeResult = readonly ["ok"] | readonly ["x", ...Refusal]

/**
 * A waiting request's answer: its hold, a refusal if it can never fit, or
 * `["w", ticket, millis]`: wait for the ticket's wake-up, or that long.
 */
export type WaitResult = ChargeResult | readonly ["w", string, number]

/** A settlement: `["c", tokens, nanos, tokensOverage, nanosOverage]` or `["r"]`. */
export type SettlementResult = readonly ["c", string, string, string, string] | readonly ["r"]

/** Takes a hold on every level of `keys`, under a lease. */
const hold = `
local function take(keys, t, n, id, lease)
  local gens = {}
  for i = 1, #keys do
    local b = level(keys[i])
    b.tr, b.nr = b.tr + t, b.nr + n
    redis.call('HSET', b.key, 'tr', int(b.tr), 'nr', int(b.nr))
    gens[i] = b.gen
  end
  redis.call('SET', tree .. ':h:' .. id, 'h ' .. int(t) .. ' ' .. int(n) .. ' ' .. table.concat(gens, ',') .. ' ' .. path_of(keys[1]))
  redis.call('ZADD', tree .. ':leases', int(now_ms() + lease), id)
  if listens() then announce({ t = 'Reserved', b = path_of(keys[1]), tk = int(t), n = int(n) }) end
end
`

/*
 * The hot operations, each over the chain `keys` of the budget it acts on.
 * Each returns its result; the batch script runs them.
 */
const operations = `
local OK = { 'ok' }

-- Charges every level of the chain, or none.
local function record(keys, t, n)
  local r = check(keys, t, n)
  if r then return slow().exceeded(keys, r, t, n) end
  local events = listens()
  for i = 1, #keys do
    local b = level(keys[i])
    local tu, nu = b.tu, b.nu
    b.tu, b.nu = tu + t, nu + n
    redis.call('HSET', b.key, 'tu', int(b.tu), 'nu', int(b.nu))
    if events then
      if i == 1 then announce({ t = 'Recorded', b = path_of(keys[1]), tk = int(t), n = int(n) }) end
      slow().cross(b, tu, nu)
    end
  end
  return OK
end

-- Holds on every level of the chain, or none, under a lease. A request that
-- fails rather than waits does not line up: it takes what is free now.
local function reserve(keys, t, n, id, lease)
  local r = check(keys, t, n)
  if r then return slow().exceeded(keys, r, t, n) end
  take(keys, t, n, id, lease)
  return OK
end

-- Settles a hold: gives it back and charges the actual at every level of
-- the chain. Returns the settlement, the first one if it was settled before.
local function commit(keys, id, t, n, estimated, keep)
  local hkey = tree .. ':h:' .. id
  local v = redis.call('GET', hkey)
  local h = nil
  if v then
    h = hold_of(v)
    if not h then return slow().settlement_of(v) end
  end
  level(root)
  local events = listens()
  local tover, nover, before = 0, 0, events and {}
  for i = 1, #keys do
    local b = level(keys[i])
    local et, en = 0, 0
    if h and b.gen == h.gens[i] then et, en = h.t, h.n end
    if b.tc >= 0 then tover = math.max(tover, t - et - math.max(0, b.tc - b.tu - b.tr)) end
    if b.nc >= 0 then nover = math.max(nover, n - en - math.max(0, b.nc - b.nu - b.nr)) end
    if events then before[i] = { b.tu, b.nu } end
    b.tu, b.nu, b.tr, b.nr = b.tu + t, b.nu + n, b.tr - et, b.nr - en
    save(b)
  end
  local settlement = { 'c', int(t), int(n), int(tover), int(nover) }
  redis.call('SET', hkey, table.concat(settlement, ' '), 'PX', keep)
  redis.call('ZREM', tree .. ':leases', id)
  if events then
    announce({ t = 'Committed', b = path_of(keys[1]), tk = settlement[2], n = settlement[3], to = settlement[4], no = settlement[5], e = estimated })
    for i = 1, #keys do slow().cross(level(keys[i]), before[i][1], before[i][2]) end
  end
  wake_all(keys)
  return settlement
end

-- Gives a hold back, unless it was settled before: returns the settlement.
local function release(keys, id, keep)
  local hkey = tree .. ':h:' .. id
  local v = redis.call('GET', hkey)
  if v then
    local h = hold_of(v)
    if not h then return slow().settlement_of(v) end
    slow().give_back(h)
    if listens() then announce({ t = 'Released', b = h.path, tk = int(h.t), n = int(h.n) }) end
  end
  redis.call('SET', hkey, 'r', 'PX', keep)
  redis.call('ZREM', tree .. ':leases', id)
  wake_all(keys)
  return { 'r' }
end
`

/**
 * Runs a batch of hot operations in order, each as if alone, and returns
 * their results in order, each as one string of its words (a flat reply
 * costs Redis and the client less than nested ones).
 *
 * KEYS: every key the batch touches, the root last. ARGV: the tree, the
 * lease and how long a settlement is kept (ms), the number of chains, each
 * chain (its length, then the places in KEYS of its keys but the last, the
 * root), then the operations, each a letter, its chain's place, and its
 * arguments:
 *
 *   r <chain> <tokens> <nanos>                   record
 *   h <chain> <tokens> <nanos> <id>              reserve
 *   c <chain> <id> <tokens> <nanos> <estimated>  commit
 *   x <chain> <id>                               release
 *
 * batch.ts writes these.
 *
 * The common case takes a path of its own: budgets with no window, no one
 * listening for events, and (for what frees room) no one waiting. It reads
 * each budget once a batch and writes it back once, and makes almost no
 * functions: Redis's Lua makes every function a script defines anew on
 * each run, and the general path's cost more than the operations. Anything
 * else (a refusal, a window, events, waiters, a settled hold) sets up the
 * general path, which the rest of the batch then takes.
 */
export const batch = Redis.script(
  (keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) => [...keys, ...args],
  {
    numberOfKeys: (keys) => keys.length,
    lua: `
local tree, root, lease, keep = ARGV[1], KEYS[#KEYS], tonumber(ARGV[2]), ARGV[3]
local nargs = #ARGV
-- %.0f is exact up to 2^53, and string.format costs more than the rest of
-- an operation: 0, the usual overage, and the lease's expiry are made once.
local function int(x)
  if x == 0 then return '0' end
  return string.format('%.0f', x)
end
-- Redis's time in milliseconds, read once a run, when first needed.
local now = nil
local function clock()
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now
end

-- One operation alone, on a budget with no parent: the common path below
-- with nothing around it (no tables of levels, no closures), since most
-- operations that go alone are this one. Anything the common path would
-- not take (a refusal, a window, a listener, a waiter, a hold not plainly
-- held) writes nothing here and goes below.
local sizes = { r = 4, h = 5, c = 6, x = 3 }
if ARGV[4] == '1' and ARGV[5] == '1' and 6 + sizes[ARGV[6]] == nargs + 1 then
  local op = ARGV[6]
  local v = redis.call('HMGET', root, 'tu', 'nu', 'tr', 'nr', 'tc', 'nc', 'gen', 'wlen', 'lq', 'wq')
  local lq = tonumber(v[9]) or 0
  if (not v[8] or v[8] == '0') and (lq == 0 or lq <= clock()) then
    local tu, nu, tr, nr = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0, tonumber(v[4]) or 0
    local tc, nc = tonumber(v[5]) or -1, tonumber(v[6]) or -1
    if op == 'r' or op == 'h' then
      local t, n = tonumber(ARGV[8]), tonumber(ARGV[9])
      if (tc < 0 or tu + tr + t <= tc) and (nc < 0 or nu + nr + n <= nc) then
        if op == 'r' then
          redis.call('HSET', root, 'tu', int(tu + t), 'nu', int(nu + n))
          return { 'ok' }
        end
        local id = ARGV[10]
        redis.call('HSET', root, 'tr', int(tr + t), 'nr', int(nr + n))
        redis.call('SET', tree .. ':h:' .. id,
          'h ' .. ARGV[8] .. ' ' .. ARGV[9] .. ' ' .. (v[7] or '0') .. ' ' .. string.sub(root, #tree + 4))
        redis.call('ZADD', tree .. ':leases', int(clock() + lease), id)
        return { 'ok' }
      end
    elseif (tonumber(v[10]) or 0) == 0 then
      local id = ARGV[8]
      local hkey = tree .. ':h:' .. id
      local h = redis.call('GET', hkey)
      local ht, hn, hgens = nil, nil, nil
      if h then ht, hn, hgens = string.match(h, '^h (%d+) (%d+) ([^ ]+) ') end
      if ht and hgens == (v[7] or '0') then
        ht, hn = tonumber(ht), tonumber(hn)
        local result
        if op == 'c' then
          local t, n = tonumber(ARGV[9]), tonumber(ARGV[10])
          local tover = tc >= 0 and math.max(0, t - ht - math.max(0, tc - tu - tr)) or 0
          local nover = nc >= 0 and math.max(0, n - hn - math.max(0, nc - nu - nr)) or 0
          result = 'c ' .. ARGV[9] .. ' ' .. ARGV[10] .. ' ' .. int(tover) .. ' ' .. int(nover)
          redis.call('HSET', root, 'tu', int(tu + t), 'nu', int(nu + n), 'tr', int(tr - ht), 'nr', int(nr - hn))
        else
          result = 'r'
          redis.call('HSET', root, 'tr', int(tr - ht), 'nr', int(nr - hn))
        end
        redis.call('SET', hkey, result, 'PX', keep)
        redis.call('ZREM', tree .. ':leases', id)
        return { result }
      end
    end
  end
end

local chains, at = {}, 5
for c = 1, tonumber(ARGV[4]) do
  local keys, length = {}, tonumber(ARGV[at])
  for j = 1, length - 1 do keys[j] = KEYS[tonumber(ARGV[at + j])] end
  keys[length] = root
  chains[c] = keys
  at = at + length
end

-- Each level as the common path keeps it: { tu, nu, tr, nr, tc, nc, gen,
-- used changed, held changed }, or false if it has a window; a chain's, or
-- false. Its writes of holds and leases wait for the end too, to go in one
-- call each (nil until there is one).
local quiet, idle, levels = true, true, {}
local holds, leased, unleased = nil, nil, nil
local function read(key)
  local l = levels[key]
  if l ~= nil then return l end
  local v = redis.call('HMGET', key, 'tu', 'nu', 'tr', 'nr', 'tc', 'nc', 'gen', 'wlen', 'lq', 'wq')
  l = (not v[8] or v[8] == '0') and {
    tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0, tonumber(v[4]) or 0,
    tonumber(v[5]) or -1, tonumber(v[6]) or -1, v[7] or '0', false, false
  }
  if key == root then
    local lq = tonumber(v[9]) or 0
    quiet = lq == 0 or lq <= clock()
    idle = (tonumber(v[10]) or 0) == 0
  end
  levels[key] = l
  return l
end
read(root)
-- A chain's levels also carry what its holds are written with: the
-- generation of each level, and the budget's path.
local chain_levels = {}
for c = 1, #chains do
  local ls, gens = {}, {}
  for i, key in ipairs(chains[c]) do
    ls[i] = read(key)
    if not ls[i] then
      ls = false
      break
    end
    gens[i] = ls[i][7]
  end
  if ls then ls.gens, ls.path = table.concat(gens, ','), string.sub(chains[c][1], #tree + 4) end
  chain_levels[c] = ls
end
-- What the holds the batch settles from 'from' on hold, read in one call
-- when the common path settles its first: the hold's string, its
-- settlement's, or false.
local held = nil
local function prefetch(from)
  held = {}
  local ids, i = {}, from
  while i <= nargs do
    local op = ARGV[i]
    if op == 'c' or op == 'x' then ids[#ids + 1] = tree .. ':h:' .. ARGV[i + 2] end
    i = i + sizes[op]
  end
  local values = redis.call('MGET', unpack(ids))
  for j = 1, #ids do held[ids[j]] = values[j] end
end
-- Whether a charge fits every level: used + held + charge within each cap.
local function fits(ls, t, n)
  for i = 1, #ls do
    local l = ls[i]
    if (l[5] >= 0 and l[1] + l[3] + t > l[5]) or (l[6] >= 0 and l[2] + l[4] + n > l[6]) then return false end
  end
  return true
end
local function write_back()
  for key, l in pairs(levels) do
    if l and l[8] and l[9] then
      redis.call('HSET', key, 'tu', int(l[1]), 'nu', int(l[2]), 'tr', int(l[3]), 'nr', int(l[4]))
    elseif l and l[8] then
      redis.call('HSET', key, 'tu', int(l[1]), 'nu', int(l[2]))
    elseif l and l[9] then
      redis.call('HSET', key, 'tr', int(l[3]), 'nr', int(l[4]))
    end
    if l then l[8], l[9] = false, false end
  end
  if holds then redis.call('MSET', unpack(holds)) end
  if leased then redis.call('ZADD', tree .. ':leases', unpack(leased)) end
  if unleased then redis.call('ZREM', tree .. ':leases', unpack(unleased)) end
  holds, leased, unleased = nil, nil, nil
end

-- The general path: every function, and every case. Its budgets are read
-- afresh, after the common path's are written back.
local function general()
  write_back()
${prelude}${hold}${operations}
  return function(op, keys, a)
    local result
    if op == 'r' then
      result = record(keys, tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]))
    elseif op == 'h' then
      result = reserve(keys, tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), ARGV[a + 4], lease)
    elseif op == 'c' then
      result = commit(keys, ARGV[a + 2], tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), ARGV[a + 5], keep)
    else
      result = release(keys, ARGV[a + 2], keep)
    end
    settle()
    return table.concat(result, ' ')
  end, finish
end

local run, finish, results, expiry = nil, nil, {}, nil
while at <= nargs do
  local op, c = ARGV[at], tonumber(ARGV[at + 1])
  local ls, result = not run and quiet and chain_levels[c], nil
  if op == 'r' then
    local t, n = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
    if ls and fits(ls, t, n) then
      for i = 1, #ls do
        local l = ls[i]
        l[1], l[2], l[8] = l[1] + t, l[2] + n, true
      end
      result = 'ok'
    end
  elseif op == 'h' then
    local t, n, id = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3]), ARGV[at + 4]
    if ls and fits(ls, t, n) then
      for i = 1, #ls do
        local l = ls[i]
        l[3], l[4], l[9] = l[3] + t, l[4] + n, true
      end
      holds, leased = holds or {}, leased or {}
      holds[#holds + 1] = tree .. ':h:' .. id
      holds[#holds + 1] = 'h ' .. ARGV[at + 2] .. ' ' .. ARGV[at + 3] .. ' ' .. ls.gens .. ' ' .. ls.path
      expiry = expiry or int(clock() + lease)
      leased[#leased + 1] = expiry
      leased[#leased + 1] = id
      result = 'ok'
    end
  elseif ls and idle then
    -- Commit or release of a hold that is still held.
    local id = ARGV[at + 2]
    local hkey = tree .. ':h:' .. id
    if not held then prefetch(at) end
    local ht, hn, hgens = nil, nil, nil
    if held[hkey] then ht, hn, hgens = string.match(held[hkey], '^h (%d+) (%d+) ([^ ]+) ') end
    if ht then
      local t, n = 0, 0
      if op == 'c' then t, n = tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4]) end
      ht, hn = tonumber(ht), tonumber(hn)
      local tover, nover = 0, 0
      -- Held at every level, unless a level was reset since.
      local gens = hgens ~= ls.gens and string.gmatch(hgens, '[^,]+')
      for i = 1, #ls do
        local l = ls[i]
        local et, en = ht, hn
        if gens and l[7] ~= gens() then et, en = 0, 0 end
        if l[5] >= 0 then tover = math.max(tover, t - et - math.max(0, l[5] - l[1] - l[3])) end
        if l[6] >= 0 then nover = math.max(nover, n - en - math.max(0, l[6] - l[2] - l[4])) end
        l[1], l[2], l[3], l[4], l[8], l[9] = l[1] + t, l[2] + n, l[3] - et, l[4] - en, l[8] or op == 'c', true
      end
      if op == 'c' then
        result = 'c ' .. ARGV[at + 3] .. ' ' .. ARGV[at + 4] .. ' ' .. int(tover) .. ' ' .. int(nover)
      else
        result = 'r'
      end
      held[hkey] = result
      redis.call('SET', hkey, result, 'PX', keep)
      unleased = unleased or {}
      unleased[#unleased + 1] = id
    end
  end
  if result == nil then
    if not run then run, finish = general() end
    result = run(op, chains[c], at)
  end
  results[#results + 1] = result
  at = at + sizes[op]
end
if run then return finish(results) end
write_back()
return results
`
  }
).withReturnType<ReadonlyArray<string>>()

/**
 * A waiting request's attempt: a hold if nothing holds it back (no cap, no
 * earlier ticket in a line of its chain), else a ticket in the line of the
 * first budget that does. `ticket` is "" on the first attempt.
 */
export const reserveWaiting = Redis.script(
  (
    chain: ReadonlyArray<string>,
    tree: string,
    tokens: number,
    nanos: number,
    id: string,
    leaseMillis: number,
    ticket: string
  ) => [...chain, tree, tokens, nanos, id, leaseMillis, ticket],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}${hold}
local t, n, id, lease, ticket = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5]), ARGV[6]
-- Larger than a cap: no release or reset could ever make room.
for i = 1, #KEYS do
  local r = slow().too_big(level(KEYS[i]), t, n)
  if r then
    if ticket ~= '' then slow().leave(ticket) end
    table.insert(r, i)
    return finish(slow().exceeded(KEYS, r, t, n))
  end
end
local r = level(root)
if ticket == '' and r.wq == 0 and refusal(KEYS, t, n) == nil then
  take(KEYS, t, n, id, lease)
  return finish({ 'ok' })
end
local W = slow()
W.reap()
local from = false
if ticket ~= '' then from = redis.call('HGET', W.ticket_of(ticket), 'l') end
-- A ticket whose lease ran out while its process was away lines up again.
if from == false then ticket = '' end
local seq = tonumber(ticket)
if ticket == '' then seq = redis.call('HINCRBY', root, 'seq', 1) end
local blocker = W.holds_back(seq, t, n, path_of(KEYS[1]))
if blocker == nil then
  take(KEYS, t, n, id, lease)
  if ticket ~= '' then W.leave(ticket) end
  return finish({ 'ok' })
end
local at = path_of(blocker)
if ticket == '' then
  ticket = tostring(seq)
  redis.call('HSET', W.ticket_of(ticket), 't', ARGV[2], 'n', ARGV[3], 'o', path_of(KEYS[1]), 'l', at)
  redis.call('ZADD', W.line_of(at), seq, ticket)
  r.wq = r.wq + 1
  redis.call('HSET', root, 'wq', int(r.wq))
elseif from ~= at then
  W.move(ticket, from, at)
  W.wake(from)
end
redis.call('ZADD', tree .. ':tickets', int(now_ms() + lease), ticket)
-- When to look again if no script calls the ticket: when what holds it back
-- could be gone with no one to announce it (a window ending, the lease of a
-- hold or of the ticket ahead running out), and at the latest after a lease
-- (a lost message).
local soon = now_ms() + lease
local b = level(blocker)
if b.wlen ~= 0 and b.wend > 0 then soon = math.min(soon, b.wend) end
local ahead = redis.call('ZRANGE', W.line_of(at), 0, 1)
if ahead[1] == ticket then
  local first = redis.call('ZRANGE', tree .. ':leases', 0, 0, 'WITHSCORES')
  if first[2] then soon = math.min(soon, tonumber(first[2])) end
elseif ahead[2] == ticket then
  local expiry = redis.call('ZSCORE', tree .. ':tickets', ahead[1])
  if expiry then soon = math.min(soon, tonumber(expiry)) end
end
return finish({ 'w', ticket, math.max(1, soon - now_ms() + 1) })
`
  }
).withReturnType<WaitResult>()

/** A waiting request giving up: its ticket leaves its line. */
export const leave = Redis.script(
  (chain: ReadonlyArray<string>, tree: string, ticket: string) => [...chain, tree, ticket],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
slow().leave(ARGV[2])
return finish(0)
`
  }
).withReturnType<number>()

/** Extends the leases of this process's live holds and waiting tickets. */
export const renew = Redis.script(
  (tree: string, leaseMillis: number, holds: ReadonlyArray<string>, tickets: ReadonlyArray<string>) => [
    `${tree}:leases`,
    `${tree}:tickets`,
    leaseMillis,
    holds.length,
    ...holds,
    ...tickets
  ],
  {
    numberOfKeys: 2,
    lua: `
local t = redis.call('TIME')
local expiry = string.format('%.0f', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1]))
local holds = tonumber(ARGV[2])
for i = 3, #ARGV do
  if i - 2 <= holds then
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
  else
    redis.call('ZADD', KEYS[2], 'XX', expiry, ARGV[i])
  end
end
return 0
`
  }
).withReturnType<number>()

/**
 * Registers a process as listening for events until `now + millis`, or,
 * with 0, unregisters it; the root's `lq` keeps the latest expiry, which is
 * all the other scripts read.
 */
export const listen = Redis.script(
  (tree: string, root: string, process: string, millis: number) => [`${tree}:listeners`, root, process, millis],
  {
    numberOfKeys: 2,
    lua: `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('HSET', KEYS[2], 'lq', last[2] or '0')
return 0
`
  }
).withReturnType<number>()

/** The counters of one budget: `[tu, nu, tr, nr, tc, nc, wlen, wend]`. */
export const snapshot = Redis.script(
  (chain: ReadonlyArray<string>, tree: string) => [...chain, tree],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
slow().reap()
local b = level(KEYS[1])
return finish({ int(b.tu), int(b.nu), int(b.tr), int(b.nr), int(b.tc), int(b.nc), int(b.wlen), int(b.wend) })
`
  }
).withReturnType<ReadonlyArray<string>>()

/** Zeroes one budget and starts a new generation. */
export const reset = Redis.script(
  (chain: ReadonlyArray<string>, tree: string) => [...chain, tree],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
local b = level(KEYS[1])
b.tu, b.nu, b.tr, b.nr = 0, 0, 0, 0
save(b)
b.gen = tostring(redis.call('HINCRBY', b.key, 'gen', 1))
local reset = { t = 'Reset', b = path_of(b.key) }
if b.wlen ~= 0 then reset.we = int(b.wend) end
if listens() then announce(reset) end
wake_all({ b.key })
return finish(0)
`
  }
).withReturnType<number>()

/**
 * Makes a budget, or sets the caps, window and thresholds of one that exists.
 * `window` is a length in milliseconds, -1 for a cron schedule (`windowId`
 * says which, `ends` are its coming ends), or 0.
 */
export const ensure = Redis.script(
  (
    chain: ReadonlyArray<string>,
    tree: string,
    tokenCap: number,
    nanoCap: number,
    thresholds: string,
    window: number,
    windowId: string,
    ends: ReadonlyArray<number>
  ) => [...chain, tree, tokenCap, nanoCap, thresholds, window, windowId, ...ends],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
local key, wid = KEYS[1], ARGV[6]
local b = level(key)
local ends = tree .. ':b:' .. path_of(key)
if redis.call('HGET', key, 'wid') ~= wid then
  -- Another window: the current one ends as the new schedule says.
  redis.call('DEL', ends)
  b.wlen, b.wend = tonumber(ARGV[5]), 0
end
for i = 7, #ARGV do redis.call('ZADD', ends, ARGV[i], ARGV[i]) end
if b.wend == 0 then b.wend = slow().window_end(b) end
redis.call('HSET', key, 'tc', ARGV[2], 'nc', ARGV[3], 'th', ARGV[4], 'gen', b.gen, 'wlen', ARGV[5], 'wid', wid, 'wend', int(b.wend))
b.tc, b.nc = tonumber(ARGV[2]), tonumber(ARGV[3])
wake_all({ key })
return finish(0)
`
  }
).withReturnType<number>()

/** Adds coming ends of a budget's cron window; one that ran out of them takes the next. */
export const extend = Redis.script(
  (chain: ReadonlyArray<string>, tree: string, ends: ReadonlyArray<number>) => [...chain, tree, ...ends],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
local b = level(KEYS[1])
if b.wlen ~= -1 then return 0 end
local ends = tree .. ':b:' .. path_of(KEYS[1])
for i = 2, #ARGV do redis.call('ZADD', ends, ARGV[i], ARGV[i]) end
if b.wend == 0 then
  b.wend = slow().window_end(b)
  redis.call('HSET', KEYS[1], 'wend', int(b.wend))
end
return finish(0)
`
  }
).withReturnType<number>()
