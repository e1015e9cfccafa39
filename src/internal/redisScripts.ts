import * as Redis from "effect/persistence/Redis"

/*
 * The Lua side of the Redis store. Every operation is one script, atomic in
 * Redis, on Redis's clock (`TIME`). A budget is a hash:
 *
 *   tu, nu   tokens and nano-dollars used
 *   tr, nr   tokens and nano-dollars held
 *   tc, nc   caps; -1 when unbounded
 *   gen      bumped by every reset; holds of an older generation are stale
 *   wlen     window length in milliseconds; 0 without a window
 *   wend     when the current window ends, in epoch milliseconds
 *
 * A hold is a hash `<tree>:h:<id>` (t, n, then c<i> and g<i>: the key and
 * generation of each level of its chain) with a lease: its expiry in the
 * sorted set `<tree>:leases`. Every script first gives back expired leases,
 * so a crashed process's holds return within the lease time. A settlement is
 * kept at `<tree>:s:<id>` for a while, so a retried commit charges once.
 * Scripts that free room publish on `<tree>:freed`, which waiters listen to,
 * if some process is registered in `<tree>:waiters`.
 *
 * All keys of one tree share the hash tag of `<tree>`, so the scripts stay
 * within one Redis Cluster slot. Integers leave Lua formatted with %.0f,
 * exact up to 2^53.
 */
const prelude = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- %.0f is exact up to 2^53; 0 first, as -0 would read "-0".
local function int(x) if x == 0 then return '0' end return string.format('%.0f', x) end
-- One read of a budget's counters; the script then works on the copy and
-- writes back once.
local function load(key)
  local v = redis.call('HMGET', key, 'tu', 'nu', 'tr', 'nr', 'tc', 'nc', 'wlen', 'wend', 'gen')
  return {
    key = key, tu = tonumber(v[1]) or 0, nu = tonumber(v[2]) or 0, tr = tonumber(v[3]) or 0, nr = tonumber(v[4]) or 0,
    tc = tonumber(v[5]) or -1, nc = tonumber(v[6]) or -1, wlen = tonumber(v[7]) or 0, wend = tonumber(v[8]) or 0,
    gen = v[9] or '0'
  }
end
local function roll(tree, b, now)
  if b.wlen > 0 and now >= b.wend then
    b.tu, b.nu, b.tr, b.nr = 0, 0, 0, 0
    b.wend = (math.floor(now / b.wlen) + 1) * b.wlen
    redis.call('HSET', b.key, 'tu', 0, 'nu', 0, 'tr', 0, 'nr', 0, 'wend', int(b.wend))
    b.gen = tostring(redis.call('HINCRBY', b.key, 'gen', 1))
    announce(tree, { t = 'Reset', b = path_of(tree, b.key), we = int(b.wend) })
    return true
  end
  return false
end
local function refused(b, t, n)
  if b.tc >= 0 and b.tu + b.tr + t > b.tc then return { 'tokens', int(b.tu + b.tr), int(b.tc) } end
  if b.nc >= 0 and b.nu + b.nr + n > b.nc then return { 'usd', int(b.nu + b.nr), int(b.nc) } end
  return nil
end
-- Gives a hold back at each level whose generation it still has.
local function drop(tree, id)
  local hkey = tree .. ':h:' .. id
  local fields = redis.call('HGETALL', hkey)
  if #fields == 0 then return false end
  local h = {}
  for i = 1, #fields, 2 do h[fields[i]] = fields[i + 1] end
  for i = 1, tonumber(h.d) do
    local key = h['c' .. i]
    if redis.call('HGET', key, 'gen') == h['g' .. i] then
      redis.call('HINCRBY', key, 'tr', int(-tonumber(h.t)))
      redis.call('HINCRBY', key, 'nr', int(-tonumber(h.n)))
    end
  end
  redis.call('DEL', hkey)
  redis.call('ZREM', tree .. ':leases', id)
  return true
end
local function reap(tree, now)
  local expired = redis.call('ZRANGEBYSCORE', tree .. ':leases', '-inf', int(now), 'LIMIT', 0, 64)
  for _, id in ipairs(expired) do drop(tree, id) end
  return #expired > 0
end
-- Wakes waiting processes, if any: each registers in <tree>:waiters until
-- a time, so a tree nobody waits on publishes nothing.
local function freed(tree)
  if redis.call('ZCOUNT', tree .. ':waiters', now_ms(), '+inf') > 0 then
    redis.call('PUBLISH', tree .. ':freed', '1')
  end
end
-- Publishes an event on <tree>:events, if some process listens (registered
-- in <tree>:listeners). Amounts travel as strings: cjson would round them.
local listening = nil
local function announce(tree, event)
  if listening == nil then listening = redis.call('ZCOUNT', tree .. ':listeners', now_ms(), '+inf') > 0 end
  if listening then redis.call('PUBLISH', tree .. ':events', cjson.encode(event)) end
end
local function path_of(tree, key) return string.sub(key, #tree + 4) end
`

type Refusal = readonly [axis: "tokens" | "usd", taken: string, cap: string, level: number]

/** `["ok"]`, or `["x", axis, used + reserved, cap, level]` for the first level that refuses. */
export type ChargeResult = readonly ["ok"] | readonly ["x", ...Refusal]

const checkChain = `
local now = now_ms()
if reap(tree, now) then freed(tree) end
local budgets = {}
for i = 1, #KEYS do
  budgets[i] = load(KEYS[i])
  if roll(tree, budgets[i], now) then freed(tree) end
end
for i = 1, #KEYS do
  local r = refused(budgets[i], t, n)
  if r then
    announce(tree, { t = 'Exceeded', b = path_of(tree, KEYS[i]), a = r[1], k = r[2], c = r[3], tk = ARGV[2], n = ARGV[3] })
    return { 'x', r[1], r[2], r[3], i }
  end
end
`

/** Charges every level of the chain (KEYS), or none. */
export const record = Redis.script(
  (chain: ReadonlyArray<string>, tree: string, tokens: number, nanos: number) => [...chain, tree, tokens, nanos],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
local tree, t, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
${checkChain}
for _, b in ipairs(budgets) do redis.call('HSET', b.key, 'tu', int(b.tu + t), 'nu', int(b.nu + n)) end
announce(tree, { t = 'Recorded', b = path_of(tree, KEYS[1]), tk = ARGV[2], n = ARGV[3] })
return { 'ok' }
`
  }
).withReturnType<ChargeResult>()

/** Holds on every level of the chain (KEYS), or none, under a lease. */
export const reserve = Redis.script(
  (chain: ReadonlyArray<string>, tree: string, tokens: number, nanos: number, id: string, leaseMillis: number) => [
    ...chain,
    tree,
    tokens,
    nanos,
    id,
    leaseMillis
  ],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
local tree, t, n, id = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
${checkChain}
local hold = { 't', ARGV[2], 'n', ARGV[3], 'd', #KEYS }
for i, b in ipairs(budgets) do
  redis.call('HSET', b.key, 'tr', int(b.tr + t), 'nr', int(b.nr + n))
  table.insert(hold, 'c' .. i)
  table.insert(hold, b.key)
  table.insert(hold, 'g' .. i)
  table.insert(hold, b.gen)
end
redis.call('HSET', tree .. ':h:' .. id, unpack(hold))
announce(tree, { t = 'Reserved', b = path_of(tree, KEYS[1]), tk = ARGV[2], n = ARGV[3] })
redis.call('ZADD', tree .. ':leases', int(now + tonumber(ARGV[5])), id)
return { 'ok' }
`
  }
).withReturnType<ChargeResult>()

/**
 * Settles a hold: gives it back and charges the actual at every level of the
 * chain (KEYS). Returns the settlement, the first one if it was settled
 * before: `["c", tokens, nanos, tokensOverage, nanosOverage]` or `["r"]`.
 */
export const commit = Redis.script(
  (chain: ReadonlyArray<string>, tree: string, id: string, tokens: number, nanos: number, keepMillis: number) => [
    ...chain,
    tree,
    id,
    tokens,
    nanos,
    keepMillis
  ],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
local tree, id, t, n = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local skey = tree .. ':s:' .. id
local done = redis.call('GET', skey)
if done then return cjson.decode(done) end
local now = now_ms()
reap(tree, now)
local hkey = tree .. ':h:' .. id
local fields = redis.call('HGETALL', hkey)
local h = {}
for i = 1, #fields, 2 do h[fields[i]] = fields[i + 1] end
local ht, hn = tonumber(h.t or '0'), tonumber(h.n or '0')
local tover, nover = 0, 0
for i = 1, #KEYS do
  local b = load(KEYS[i])
  roll(tree, b, now)
  local et, en = 0, 0
  if h.t and b.gen == h['g' .. i] then et, en = ht, hn end
  if b.tc >= 0 then tover = math.max(tover, t - et - math.max(0, b.tc - b.tu - b.tr)) end
  if b.nc >= 0 then nover = math.max(nover, n - en - math.max(0, b.nc - b.nu - b.nr)) end
  redis.call('HSET', b.key, 'tu', int(b.tu + t), 'nu', int(b.nu + n), 'tr', int(b.tr - et), 'nr', int(b.nr - en))
end
redis.call('DEL', hkey)
redis.call('ZREM', tree .. ':leases', id)
local settlement = { 'c', ARGV[3], ARGV[4], int(tover), int(nover) }
redis.call('SET', skey, cjson.encode(settlement), 'PX', ARGV[5])
freed(tree)
announce(tree, { t = 'Committed', b = path_of(tree, KEYS[1]), tk = ARGV[3], n = ARGV[4], to = int(tover), no = int(nover) })
return settlement
`
  }
).withReturnType<readonly ["c", string, string, string, string] | readonly ["r"]>()

/** Gives a hold back, unless it was settled before: returns the settlement. */
export const release = Redis.script(
  (key: string, tree: string, id: string, keepMillis: number) => [key, tree, id, keepMillis],
  {
    numberOfKeys: 1,
    lua: `${prelude}
local tree, id = ARGV[1], ARGV[2]
local skey = tree .. ':s:' .. id
local done = redis.call('GET', skey)
if done then return cjson.decode(done) end
local now = now_ms()
reap(tree, now)
local hkey = tree .. ':h:' .. id
local held = redis.call('HMGET', hkey, 't', 'n')
if drop(tree, id) then
  announce(tree, { t = 'Released', b = path_of(tree, KEYS[1]), tk = held[1], n = held[2] })
end
local settlement = { 'r' }
redis.call('SET', skey, cjson.encode(settlement), 'PX', ARGV[3])
freed(tree)
return settlement
`
  }
).withReturnType<readonly ["c", string, string, string, string] | readonly ["r"]>()

/** Extends the leases of holds still alive. */
export const renew = Redis.script(
  (leases: string, leaseMillis: number, ids: ReadonlyArray<string>) => [leases, leaseMillis, ...ids],
  {
    numberOfKeys: 1,
    lua: `${prelude}
local expiry = now_ms() + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', int(expiry), ARGV[i]) end
return 0
`
  }
).withReturnType<number>()

/**
 * Registers a process in a sorted set until `now + millis`, or, with 0,
 * unregisters it: in `<tree>:waiters` to be told when room is freed, in
 * `<tree>:listeners` to be sent events.
 */
export const register = Redis.script(
  (set: string, process: string, millis: number) => [set, process, millis],
  {
    numberOfKeys: 1,
    lua: `${prelude}
if tonumber(ARGV[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], int(now_ms() + tonumber(ARGV[2])), ARGV[1])
end
return 0
`
  }
).withReturnType<number>()

/** The counters of one budget: `[tu, nu, tr, nr, tc, nc, wlen, wend]`. */
export const snapshot = Redis.script(
  (key: string, tree: string) => [key, tree],
  {
    numberOfKeys: 1,
    lua: `${prelude}
local tree = ARGV[1]
local now = now_ms()
if reap(tree, now) then freed(tree) end
local b = load(KEYS[1])
if roll(tree, b, now) then freed(tree) end
return { int(b.tu), int(b.nu), int(b.tr), int(b.nr), int(b.tc), int(b.nc), int(b.wlen), int(b.wend) }
`
  }
).withReturnType<ReadonlyArray<string>>()

/** Zeroes one budget and starts a new generation. */
export const reset = Redis.script(
  (key: string, tree: string) => [key, tree],
  {
    numberOfKeys: 1,
    lua: `${prelude}
redis.call('HSET', KEYS[1], 'tu', 0, 'nu', 0, 'tr', 0, 'nr', 0)
redis.call('HINCRBY', KEYS[1], 'gen', 1)
freed(ARGV[1])
local wlen = tonumber(redis.call('HGET', KEYS[1], 'wlen') or '0')
local reset = { t = 'Reset', b = path_of(ARGV[1], KEYS[1]) }
if wlen > 0 then reset.we = redis.call('HGET', KEYS[1], 'wend') end
announce(ARGV[1], reset)
return 0
`
  }
).withReturnType<number>()

/** Makes a budget, or sets the caps and window of one that exists. */
export const ensure = Redis.script(
  (key: string, tree: string, tokenCap: number, nanoCap: number, windowMillis: number) => [
    key,
    tree,
    tokenCap,
    nanoCap,
    windowMillis
  ],
  {
    numberOfKeys: 1,
    lua: `${prelude}
local key, wlen = KEYS[1], tonumber(ARGV[4])
local now = now_ms()
if redis.call('EXISTS', key) == 0 then
  redis.call('HSET', key, 'tu', 0, 'nu', 0, 'tr', 0, 'nr', 0, 'gen', 0, 'wlen', 0, 'wend', 0)
end
if tonumber(redis.call('HGET', key, 'wlen')) ~= wlen then
  local wend = 0
  if wlen > 0 then wend = (math.floor(now / wlen) + 1) * wlen end
  redis.call('HSET', key, 'wlen', ARGV[4], 'wend', int(wend))
end
redis.call('HSET', key, 'tc', ARGV[2], 'nc', ARGV[3])
freed(ARGV[1])
return 0
`
  }
).withReturnType<number>()

