import * as Redis from "effect/persistence/Redis"
import { charges } from "./lua/charges.ts"
import { state, time } from "./lua/common.ts"
import { events } from "./lua/events.ts"
import { finish } from "./lua/finish.ts"
import { holds } from "./lua/holds.ts"
import { ids } from "./lua/ids.ts"
import { leases } from "./lua/leases.ts"
import { ledger } from "./lua/ledger.ts"
import { levels } from "./lua/levels.ts"
import { rates } from "./lua/rates.ts"
import { waiting } from "./lua/waiting.ts"
import { windows } from "./lua/windows.ts"

/*
 * The scripts of the Redis store. Every operation is one script, atomic in
 * Redis, on Redis's clock (`TIME`). The hot ones (record, reserve, commit,
 * release) run in batches of any size, one alone too: the `batch` script
 * runs every operation a process sends together, each in turn (batch.ts).
 * The other scripts get the chain of the budget they act on as KEYS, from
 * that budget up to the root; every script gets the tree's key as ARGV[1].
 * A budget is a hash `<tree>:n:<path>`:
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
 *   lg       the bound of the ledger's outbox, if the tree keeps a ledger
 *
 * A budget whose hash has no caps was lost by Redis (lua/levels.ts): the
 * scripts answer `["l", level]` for the highest lost level of a chain, and
 * change nothing; but a commit, which charges the levels kept (the usage
 * happened) and the lost ones when it is sent again after they are made
 * again (lua/holds.ts).
 *
 * The Lua is in lua/, a concern a file: common (time, integers, arguments,
 * a run's state), levels (budgets and caps), rates (rates and holds in
 * flight), events, windows, waiting
 * (lines and tickets), holds (taking, settling), leases (reaping), ids
 * (idempotency keys), ledger (entries) and charges (record, reserve); finish writes what a
 * run changed. All keys of
 * one tree share the hash tag of `<tree>`, so a script stays within one
 * Redis Cluster slot.
 */

/** What the scripts over a budget tree start with: every function, most made on first use. */
const prelude = `${state}${levels}${rates}${events}${windows}${waiting}${holds}${leases}${ids}${ledger}${finish}`

type Refusal = readonly [
  axis: "tokens" | "usd" | "requests",
  taken: string,
  cap: string,
  level: number,
  kind: "cap" | "rate" | "concurrency",
  retryMillis: string
]

/** The place in its chain of a budget whose state Redis lost: 1 for the budget itself. */
export type Lost = readonly ["l", level: string]

/** Whether a script's answer is `["l", level]`, among answers whose first word is any string. */
export const isLost = (answer: ReadonlyArray<unknown>): answer is Lost => answer[0] === "l"

/** Expired holds are left that this run could not give back (a run's work is bounded): send it again. */
export type Again = readonly ["a"]

/**
 * What a reserve with an idempotency key gets when a hold is under it:
 * `["h", tokens, nanos]` while held, its settlement once committed.
 */
export type Kept = readonly ["h", string, string] | readonly ["c", string, string, string, string]

/** Whether a script's answer is `["a"]`. */
export const isAgain = (answer: ReadonlyArray<unknown>): answer is Again => answer[0] === "a"

/**
 * `["ok"]`, `["x", axis, used + reserved (for a rate, what its bucket
 * lent), cap, level, kind, retry ms or "-"]` for the first level
 * that refuses, `["a"]` where it would refuse but expired holds are left
 * to give back, or `["l", level]` for the highest level that is lost.
 */
export type ChargeResult = readonly ["ok"] | readonly ["x", ...Refusal] | Again | Lost | Backlogged

/** The ledger's outbox holds its bound of entries (`backlog` of them): new charges are refused. */
export type Backlogged = readonly ["b", backlog: string]

/**
 * A waiting request's answer: its hold, a refusal if it can never fit, or
 * `["w", ticket, millis]`: wait for the ticket's wake-up, or that long. One
 * with an idempotency key may get the hold already under it (`Kept`). One
 * whose request gave up before it ran gets `["g"]`, and did nothing.
 */
export type WaitResult = Exclude<ChargeResult, Again> | Kept | readonly ["w", string, number] | readonly ["g"]

/**
 * A settlement: `["c", tokens, nanos, tokensOverage, nanosOverage]` or
 * `["r"]`; or `["i", axis, level]`, a commit that would take that level's
 * use past what a counter holds exactly, which changed nothing; or
 * `["l", level]`: a commit that charged the levels kept and not the lost
 * ones (the highest is `level`), which it charges when sent again after
 * they are made again.
 */
export type SettlementResult =
  | readonly ["c", string, string, string, string]
  | readonly ["r"]
  | readonly ["i", "tokens" | "usd", string]
  | Lost

/**
 * Runs a batch of hot operations in order, each as if alone, and returns
 * their results in order, each as one string of its words (a flat reply
 * costs Redis and the client less than nested ones). Budgets and holds are
 * read once a batch and written back once, at its end.
 *
 * KEYS: every key the batch touches, the root last. ARGV: the tree, the
 * lease, how long a settlement is kept and how long an idempotency key is
 * (ms), the number of chains, each chain (its length, then the places in
 * KEYS of its keys but the last, the root), then the operations, each a
 * letter, its chain's place, and its arguments:
 *
 *   r <chain> <tokens> <nanos> <labels>          record
 *   R <chain> <tokens> <nanos> <labels> <id>     record, once for its id
 *   h <chain> <tokens> <nanos> <labels> <id>     reserve, a new hold id
 *   H <chain> <tokens> <nanos> <labels> <id>     reserve, once for its id
 *   c <chain> <id> <tokens> <nanos> <estimated> <labels>  commit
 *   x <chain> <id>                               release
 *
 * `labels` are the charge's, as JSON text ('' for none), for its ledger
 * entry and events (lua/ledger.ts); a commit carries its hold's, so a late
 * one has them however long after its hold it comes.
 *
 * A reserve once for its id answers `ok` for a new hold, `h <tokens>
 * <nanos>` for the hold already held under it, or its settlement if it was
 * committed (lua/ids.ts).
 *
 * batch.ts writes these. All of them are checked before the first
 * operation runs: a malformed batch fails whole, and changes nothing.
 */
export const batch = Redis.script(
  (keys: ReadonlyArray<string>, args: ReadonlyArray<string | number>) => [...keys, ...args],
  {
    numberOfKeys: (keys) => keys.length,
    lua: `${prelude}${charges}
S.lease = count(2)
count(3)
count(4)
S.keep, S.id_keep = ARGV[3], ARGV[4]
-- Chains and places are checked by what they name: a chain or key that
-- is not there. Chains are found by their place as it came, in plain
-- digits.
local chains, at, nargs, nkeys = {}, 6, #ARGV, #KEYS
for c = 1, tonumber(ARGV[5]) or bad(5) do
  local length = tonumber(ARGV[at])
  if not length or length < 1 then bad(at) end
  local keys = {}
  for j = 1, length - 1 do
    local place = tonumber(ARGV[at + j])
    keys[j] = place ~= nkeys and KEYS[place]
    if not keys[j] then bad(at + j) end
  end
  keys[length] = S.root
  chains[tostring(c)] = keys
  at = at + length
end
-- The operations, checked and decoded in one pass: a plan of four entries
-- each, where it starts in ARGV, its chain, its tokens and nanos. The
-- holds the batch settles are read in one call.
local plan, p, settled, ids = {}, 0, nil, nil
while at <= nargs do
  local op, size, t, n = ARGV[at], 0, false, false
  local charge = op == 'r' or op == 'h' or op == 'H' or op == 'R'
  if op == 'r' then size = 5 elseif charge then size = 6 elseif op == 'c' then size = 7 elseif op == 'x' then size = 3 end
  if size == 0 or at + size - 1 > nargs then bad(at) end
  local keys = chains[ARGV[at + 1]]
  if not keys then bad(at + 1) end
  if charge then
    t, n = count(at + 2), count(at + 3)
    if size == 6 and ARGV[at + 5] == '' then bad(at + 5) end
  else
    local id = ARGV[at + 2]
    if id == '' then bad(at + 2) end
    if op == 'c' then
      t, n = count(at + 3), count(at + 4)
      if ARGV[at + 5] ~= '0' and ARGV[at + 5] ~= '1' then bad(at + 5) end
    end
    settled, ids = settled or {}, ids or {}
    settled[#settled + 1], ids[#ids + 1] = S.tree .. ':h:' .. id, id
  end
  plan[p + 1], plan[p + 2], plan[p + 3], plan[p + 4] = at, keys, t, n
  p, at = p + 4, at + size
end
local H = settled and S.holds()
if settled then
  local values = redis.call('MGET', unpack(settled))
  for j = 1, #ids do H.values[ids[j]] = values[j] end
end

local results, record, reserve = {}, S.record, S.reserve
for q = 1, p, 4 do
  local a, keys, t, n = plan[q], plan[q + 1], plan[q + 2], plan[q + 3]
  local op, result = ARGV[a], nil
  -- A settlement gives back and charges what is kept (H.settle).
  local lost = op ~= 'c' and op ~= 'x' and S.lost(keys)
  if lost then
    result = 'l ' .. lost
  elseif op == 'r' then
    result = record(keys, t, n, '', ARGV[a + 4])
  elseif op == 'h' then
    result = reserve(keys, t, n, ARGV[a + 2], ARGV[a + 3], ARGV[a + 5], ARGV[a + 4])
  elseif op == 'R' then
    result = S.ids().record(keys, t, n, ARGV[a + 5], ARGV[a + 4])
  elseif op == 'H' then
    result = S.ids().reserve(keys, t, n, ARGV[a + 2], ARGV[a + 3], ARGV[a + 5], ARGV[a + 4])
  elseif op == 'c' then
    result = H.settle(keys, ARGV[a + 2], t, n, ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6])
  else
    result = H.settle(keys, ARGV[a + 2])
  end
  if S.restarted then S.W.after_step() end
  results[(q + 3) / 4] = result
end
return S.finish(results)
`
  }
).withReturnType<ReadonlyArray<string>>()

/**
 * A waiting request's attempt: a hold if nothing holds it back (no cap, no
 * earlier ticket in a line of its chain), else its ticket in the line of
 * the first budget that does. The ticket's id is the process's, the same
 * for every attempt of one request, so that `leave` finds it even when
 * the attempt that lined it up had no reply; its place in line is the
 * root's `seq` when it first lined up.
 */
export const reserveWaiting = Redis.script(
  (
    chain: ReadonlyArray<string>,
    tree: string,
    tokens: number,
    nanos: number,
    id: string,
    leaseMillis: number,
    ticket: string,
    labels: string
  ) => [...chain, tree, tokens, nanos, id, leaseMillis, ticket, labels],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
local t, ts = count(2)
local n, ns = count(3)
local id, ticket, labels = ARGV[4], ARGV[6], ARGV[7]
if id == '' then bad(4) end
S.lease = count(5)
if ticket == '' then bad(6) end
if not labels then bad(7) end
local tree, root, level, path_of = S.tree, S.root, S.level, S.path_of
-- Its request gave up already (leave ran first): nothing to do.
if redis.call('EXISTS', tree .. ':g:' .. ticket) == 1 then return { 'g' } end
local Q = S.waiting()
local lost = S.lost(KEYS)
if lost then
  Q.leave(ticket)
  return S.finish({ 'l', tostring(lost) })
end
-- An idempotency key whose hold is held or committed: that one.
local kept = string.byte(id) == 107 and S.ids().kept(id)
if kept then
  Q.leave(ticket)
  return S.finish(kept)
end
-- The ledger's outbox at its bound: refused, not lined up.
local full = S.backlogged()
if full then
  Q.leave(ticket)
  return S.finish({ 'b', string.sub(full, 3) })
end
-- Larger than a cap: no release or reset could ever make room.
local r = S.refusal(KEYS, t, n, true)
if r then
  Q.leave(ticket)
  return S.finish(S.events().exceeded(KEYS, r, t, n))
end
-- No one waits in the tree (so neither does this ticket) and it fits.
if level(root).wq == 0 and S.refusal(KEYS, t, n, false, false, true) == nil then
  S.holds().take(KEYS, t, n, ts, ns, id, labels)
  return S.finish({ 'ok' })
end
local L = S.leases().reap_all()
-- The ticket's line and place, if it is in one. One whose lease ran out
-- while its process was away (reaped) lines up again, at the back.
local w = redis.call('HMGET', Q.ticket_of(ticket), 'l', 's')
local from, seq = w[1], tonumber(w[2])
if not from then seq = (tonumber(redis.call('HGET', root, 'seq')) or 0) + 1 end
local blocker = Q.holds_back(seq, t, n, path_of(KEYS[1]))
if blocker == nil then
  S.holds().take(KEYS, t, n, ts, ns, id, labels)
  if from then Q.leave(ticket) end
  return S.finish({ 'ok' })
end
local at = path_of(blocker)
if not from then
  redis.call('HINCRBY', root, 'seq', 1)
  redis.call('HSET', Q.ticket_of(ticket), 't', ts, 'n', ns, 'o', path_of(KEYS[1]), 'l', at, 's', seq)
  redis.call('ZADD', Q.line_of(at), seq, ticket)
  Q.counted(1)
elseif from ~= at then
  Q.move(ticket, from, at, seq)
  Q.wake(from)
end
local now = S.now_ms()
redis.call('ZADD', tree .. ':tickets', S.int(now + S.lease), ticket)
-- When to look again if no script calls the ticket: when what holds it back
-- could be gone with no one to announce it (a window ending, the lease of a
-- hold or of the ticket ahead running out), and at the latest after a lease
-- (a lost message).
local soon = now + S.lease
-- Expired leases this run could not give back: look again at once.
if L.more then soon = now end
local b = level(blocker)
if b.wlen ~= 0 and b.wend > 0 then soon = math.min(soon, b.wend) end
local ahead = redis.call('ZRANGE', Q.line_of(at), 0, 1)
if ahead[1] == ticket then
  local first = redis.call('ZRANGE', tree .. ':leases', 0, 0, 'WITHSCORES')
  if first[2] then soon = math.min(soon, tonumber(first[2])) end
  -- A rate that holds it back: when its buckets, and those above, will admit it.
  if b.rt then
    local wait = S.rates().longest_wait(KEYS, 1, t, n)
    if wait > 0 then soon = math.min(soon, now + wait) end
  end
elseif ahead[2] == ticket then
  local expiry = redis.call('ZSCORE', tree .. ':tickets', ahead[1])
  if expiry then soon = math.min(soon, tonumber(expiry)) end
end
return S.finish({ 'w', ticket, math.max(1, soon - now + 1) })
`
  }
).withReturnType<WaitResult>()

/**
 * A waiting request giving up: its ticket leaves its line, and the hold
 * `id`, if an attempt that had no reply took it, is given back ("" for
 * none). The ticket is marked gone for `keepMillis`: an attempt of it that
 * runs after this (one sent on another connection) does nothing.
 */
export const leave = Redis.script(
  (chain: ReadonlyArray<string>, tree: string, ticket: string, id: string, keepMillis: number) => [
    ...chain,
    tree,
    ticket,
    id,
    keepMillis
  ],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
if ARGV[2] == '' then bad(2) end
count(4)
S.waiting().leave(ARGV[2])
redis.call('SET', S.tree .. ':g:' .. ARGV[2], '1', 'PX', ARGV[4])
local id = ARGV[3]
if id ~= '' then S.holds().drop(id) end
return S.finish(0)
`
  }
).withReturnType<number>()

/**
 * Extends the leases of this process's live holds and waiting tickets. A
 * live hold that has no lease was settled by a commit whose reply this
 * process has not had: its settlement is kept `keepMillis` longer, so the
 * commit, retried however late while the process lives, finds it.
 */
export const renew = Redis.script(
  (
    tree: string,
    leaseMillis: number,
    keepMillis: number,
    holds: ReadonlyArray<string>,
    tickets: ReadonlyArray<string>
  ) => [`${tree}:leases`, `${tree}:tickets`, tree, leaseMillis, keepMillis, holds.length, ...holds, ...tickets],
  {
    numberOfKeys: 2,
    lua: `${time}
local lease, keep, holds = count(2), count(3), count(4)
if holds > #ARGV - 4 then bad(4) end
local expiry = S.int(S.now_ms() + lease)
for i = 5, #ARGV do
  if i - 4 > holds then
    redis.call('ZADD', KEYS[2], 'XX', expiry, ARGV[i])
  elseif redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[i])
  else
    -- Kept longer, never shorter (one of an idempotency key keeps longer).
    local key = ARGV[1] .. ':h:' .. ARGV[i]
    local ttl = redis.call('PTTL', key)
    if ttl >= 0 and ttl < keep then redis.call('PEXPIRE', key, keep) end
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
    lua: `${time}
local millis, now = count(2), S.now_ms()
if millis == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], S.int(now + millis), ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('HSET', KEYS[2], 'lq', last[2] or '0')
return 0
`
  }
).withReturnType<number>()

/**
 * The counters of one budget: `[tu, nu, tr, nr, tc, nc, wlen, wend]`, or
 * `["l", level]`, or `["a"]`: expired holds are left to give back, ask again.
 */
export const snapshot = Redis.script(
  (chain: ReadonlyArray<string>, tree: string) => [...chain, tree],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
local refused = S.unreadable(KEYS)
if refused then return refused end
return S.finish(S.counters(S.level(KEYS[1]), {}))
`
  }
).withReturnType<ReadonlyArray<string> | Lost | Again>()

/**
 * The counters of each child of the budget at the head of KEYS that the
 * tree's registry names (`<tree>:k:<path>`, written by ensure), as
 * `snapshot` answers them, each after its name: the tenants view. A child
 * whose state Redis lost is left out.
 */
export const children = Redis.script(
  (chain: ReadonlyArray<string>, tree: string) => [...chain, tree],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
local refused = S.unreadable(KEYS)
if refused then return refused end
local path = S.path_of(KEYS[1])
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', S.tree .. ':k:' .. path)) do
  local b = S.level(S.tree .. ':n:' .. path .. '/' .. name)
  if not b.lost then
    out[#out + 1] = name
    S.counters(b, out)
  end
end
return S.finish(out)
`
  }
).withReturnType<ReadonlyArray<string> | Lost | Again>()

/** Zeroes one budget and starts a new generation; `["l", level]` if a level is lost (ensure makes it again). */
export const reset = Redis.script(
  (chain: ReadonlyArray<string>, tree: string) => [...chain, tree],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
local lost = S.lost(KEYS)
if lost then return { 'l', tostring(lost) } end
local b = S.level(KEYS[1])
S.windows().afresh(b)
-- When, outside its hash: a budget rebuilt from the ledger counts from then.
redis.call('SET', S.tree .. ':rs:' .. S.path_of(b.key), S.int(S.now_ms()))
if S.listens() then
  local event = { t = 'Reset', b = S.path_of(b.key) }
  if b.wlen ~= 0 then event.we = S.int(b.wend) end
  S.events().announce(event)
end
S.wake_all({ b.key })
return S.finish(0)
`
  }
).withReturnType<0 | Lost>()

/**
 * Makes a budget, or sets the caps, window and thresholds of one that
 * exists; answers 0, or the previous caps of one that had others, or
 * `["l", level]` if a level above it is lost. A budget that is lost (or
 * new: the two look alike) is made afresh if `make`, answered "m": nothing
 * used or held, in a new generation, so holds taken before the loss are
 * stale; without `make` (its opener has it open, so it is not new), it
 * answers `["l", 1]`.
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
    make: boolean,
    rate: string,
    maxConcurrent: number,
    ledgerBound: number,
    restoreMillis: number,
    ends: ReadonlyArray<number>
  ) => [
    ...chain,
    tree,
    tokenCap,
    nanoCap,
    thresholds,
    window,
    windowId,
    make ? 1 : 0,
    rate,
    maxConcurrent,
    ledgerBound,
    restoreMillis,
    ...ends
  ],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
local tc, nc, wlen = count(2, -1), count(3, -1), count(5, -1)
local th, wid = ARGV[4], ARGV[6]
for f in string.gmatch(th, '[^,]+') do
  if not tonumber(f) then bad(4) end
end
if ARGV[7] ~= '0' and ARGV[7] ~= '1' then bad(7) end
local rt, mc = ARGV[8], count(9, -1)
for bucket in string.gmatch(rt, '[^;]+') do
  local capacity = string.match(bucket, '^[tnq]:%d+:%d+:([%d%.e%+]+)$')
  if not (capacity and tonumber(capacity)) then bad(8) end
end
local lg = count(10, -1)
local rebuild = count(11)
for i = 12, #ARGV do count(i) end
for i = #KEYS, 2, -1 do
  if S.level(KEYS[i]).lost then return { 'l', tostring(i) } end
end
local key = KEYS[1]
local b = S.level(key)
-- One the opener had open already: lost, not new, and not to be made.
if b.lost and ARGV[7] == '0' then return { 'l', '1' } end
-- Being rebuilt from the ledger by a process that may still finish (within
-- rebuild ms, a lease): not made again; past that, made afresh.
if b.restoring and b.restoring + rebuild > S.now_ms() then return { 'l', '1' } end
-- Other limits than a budget that exists had: those given last apply, and
-- the opener is told the previous ones (never silent): its caps, rate and
-- most in flight.
local capped = b.tc ~= tc or b.nc ~= nc
local previous = not b.lost and (capped or (b.rt or '') ~= rt or b.mc ~= mc) and
  { S.int(b.tc), S.int(b.nc), b.rt or '', S.int(b.mc) }
local made = b.lost
if made then
  S.windows().afresh(b)
  -- A generation no earlier life of the budget had (a lost hash left no
  -- count to go on from): holds taken before the loss are stale.
  b.gen = S.int(S.now_ms())
  b.lost = false
  redis.call('HSET', key, 'lf', b.gen)
  b.life = tonumber(b.gen)
  if b.restoring then
    -- A rebuild that did not finish left counters (nothing was charged on
    -- them): made with nothing used, as any lost budget.
    b.tu, b.nu, b.tr, b.nr, b.inf, b.du, b.dh, b.restoring = 0, 0, 0, 0, 0, true, true, nil
  end
  if rebuild > 0 then
    -- onStateLost "restore": lost to every operation until the store that
    -- made it has added what the ledger says it spent (restore).
    redis.call('HSET', key, 'rb', 'r' .. b.gen)
  else
    redis.call('HDEL', key, 'rb')
  end
  if key == S.root then
    -- Lines can outlive a root: their tickets are counted again, and the
    -- tickets handed from now on come after theirs.
    b.wq, b.dq = redis.call('ZCARD', S.tree .. ':tickets'), true
    redis.call('HSET', key, 'seq', S.int(S.now_ms() * 1000))
  end
end
local ends = S.tree .. ':b:' .. S.path_of(key)
if redis.call('HGET', key, 'wid') ~= wid then
  -- Another window: the current one ends as the new schedule says.
  redis.call('DEL', ends)
  b.wlen, b.wend = wlen, 0
end
for i = 12, #ARGV do redis.call('ZADD', ends, ARGV[i], ARGV[i]) end
-- A child is listed under its parent (the tenants view: children).
if #KEYS > 1 then
  local path = S.path_of(key)
  redis.call('SADD', S.tree .. ':k:' .. S.path_of(KEYS[2]), string.sub(path, #S.path_of(KEYS[2]) + 2))
end
-- A store with a sink makes the tree keep a ledger (ledger.ts), for every
-- process that charges it; the bound given last applies. A root made again
-- by a process without one keeps it.
local root = S.level(S.root)
if lg >= 1 then
  if redis.call('GET', S.tree .. ':lg') ~= ARGV[10] then redis.call('SET', S.tree .. ':lg', ARGV[10]) end
  if root.lg ~= lg then
    redis.call('HSET', S.root, 'lg', ARGV[10])
    root.lg, S.lg = lg, lg
  end
elseif made and key == S.root then
  local kept = redis.call('GET', S.tree .. ':lg')
  if kept then
    redis.call('HSET', S.root, 'lg', kept)
    root.lg, S.lg = tonumber(kept), tonumber(kept)
  end
end
if b.wend == 0 then b.wend = S.windows().end_of(b) end
redis.call('HSET', key, 'tc', ARGV[2], 'nc', ARGV[3], 'th', th, 'wlen', ARGV[5], 'wid', wid, 'mc', ARGV[9])
b.tc, b.nc, b.dg, b.dw = tc, nc, true, true
-- Another rate (or none): a bucket of an axis it had keeps its level (no
-- fresh burst for opening a budget again), at most the new capacity.
local limits = (b.rt or '') ~= rt or b.mc ~= mc
if (b.rt or '') ~= rt then
  if rt == '' then
    redis.call('HDEL', key, 'rt', 'bk')
    b.rt, b.bk, b.rs = nil, nil, nil
  else
    local R, kept = S.rates(), {}
    if b.rt then
      for _, r in ipairs(R.of(b)) do
        R.refill(r)
        kept[r.axis] = r.level
      end
    end
    b.rt, b.bk, b.rs = rt, nil, nil
    for _, r in ipairs(R.of(b)) do
      if kept[r.axis] then r.level = math.min(r.cap, kept[r.axis]) end
      r.at = S.now_ms()
    end
    redis.call('HSET', key, 'rt', rt)
    b.dr = true
  end
end
b.mc = mc
if previous and capped and S.listens() then
  S.events().announce({ t = 'Reconfigured', b = S.path_of(key), tc = ARGV[2], nc = ARGV[3], ptc = previous[1], pnc = previous[2] })
end
-- Its waiters and those above it may fit now, or never (limits lowered).
if (previous or limits) and S.level(S.root).wq > 0 then S.waiting().wake_hopeless() end
S.wake_all(KEYS)
return S.finish(previous or (made and 'm') or 0)
`
  }
).withReturnType<0 | "m" | readonly [tokenCap: string, nanoCap: string, rate: string, maxConcurrent: string] | Lost>()

/** Adds coming ends of a budget's cron window; one that ran out of them takes the next. */
export const extend = Redis.script(
  (chain: ReadonlyArray<string>, tree: string, ends: ReadonlyArray<number>) => [...chain, tree, ...ends],
  {
    numberOfKeys: (chain) => chain.length,
    lua: `${prelude}
for i = 2, #ARGV do count(i) end
local b = S.level(KEYS[1])
if b.wlen ~= -1 then return S.finish(0) end
local ends = S.tree .. ':b:' .. S.path_of(KEYS[1])
for i = 2, #ARGV do redis.call('ZADD', ends, ARGV[i], ARGV[i]) end
if b.wend == 0 then b.wend, b.dw = S.windows().end_of(b), true end
return S.finish(0)
`
  }
).withReturnType<number>()

/**
 * A drainer's next batch of a tree's ledger outbox (lua/ledger.ts), read
 * through the consumer group `drain` (made on first use): entries this
 * consumer took and did not finish (a reply lost) first; then those
 * another drainer took and has not finished for `idleMillis` (it died, or
 * its sink hangs); else new ones. Answers the outbox's length, then each
 * entry's stream id and its value (lua/ledger.ts: kind, id base, budget,
 * tokens, nanos, overage of each, estimated, labels, time, window end,
 * joined by NUL).
 */
export const ledgerTake = Redis.script(
  (outbox: string, consumer: string, count: number, idleMillis: number) => [outbox, consumer, count, idleMillis],
  {
    numberOfKeys: () => 1,
    lua: `
local key, consumer, n, idle = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
local length = redis.call('XLEN', key)
if length == 0 then return { '0' } end
redis.pcall('XGROUP', 'CREATE', key, 'drain', '0')
local function read(from)
  local answer = redis.call('XREADGROUP', 'GROUP', 'drain', consumer, 'COUNT', n, 'STREAMS', key, from)
  return answer and answer[1][2] or {}
end
local entries = read('0')
if #entries == 0 then entries = redis.call('XAUTOCLAIM', key, 'drain', consumer, idle, '0-0', 'COUNT', n)[2] end
if #entries == 0 then entries = read('>') end
local out = { tostring(length) }
for _, e in ipairs(entries) do
  local f = e[2]
  if type(f) == 'table' then
    out[#out + 1] = e[1]
    out[#out + 1] = f[2]
  else
    -- Deleted (its batch finished by another drainer): nothing left to do.
    redis.call('XACK', key, 'drain', e[1])
  end
end
return out
`
  }
).withReturnType<ReadonlyArray<string>>()

/** Entries of a ledger outbox that the sink took: acknowledged and deleted, in one step. */
export const ledgerDone = Redis.script(
  (outbox: string, ids: ReadonlyArray<string>) => [outbox, ...ids],
  {
    numberOfKeys: () => 1,
    lua: `
redis.call('XACK', KEYS[1], 'drain', unpack(ARGV))
return redis.call('XDEL', KEYS[1], unpack(ARGV))
`
  }
).withReturnType<number>()

/**
 * Deletes the consumers of a ledger outbox's group that hold nothing and
 * were idle longer than `idleMillis` (drainers of processes that ended),
 * and `consumer` itself if it holds nothing (`idleMillis` -1: this one is
 * closing). Answers how many it deleted.
 */
export const ledgerTidy = Redis.script(
  (outbox: string, consumer: string, idleMillis: number) => [outbox, consumer, idleMillis],
  {
    numberOfKeys: () => 1,
    lua: `
local key, me, idle = KEYS[1], ARGV[1], tonumber(ARGV[2])
if redis.call('EXISTS', key) == 0 then return 0 end
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', key, 'drain')
if not ok then return 0 end
local deleted = 0
for _, c in ipairs(consumers) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  local mine = f['name'] == me
  if f['pending'] == 0 and ((mine and idle < 0) or (not mine and idle >= 0 and f['idle'] > idle)) then
    redis.call('XGROUP', 'DELCONSUMER', key, 'drain', f['name'])
    deleted = deleted + 1
  end
end
return deleted
`
  }
).withReturnType<number>()

/**
 * What a budget being rebuilt from the ledger (onStateLost "restore")
 * still has in its tree's outbox, `count` entries of it after the Stream
 * id `after` ("-" from the start), for its making at `made` ("" for the
 * first chunk): KEYS its hash and the outbox. Answers
 * `["ok", made, reset, next]` (when it was made again; when it was last
 * reset, "0" if never; the Stream id to go on after, "" at the end) and,
 * for each entry of the budget or one below it made before `made`, its
 * id's base and Stream id, its time, tokens and nanos; `["x"]` if it is
 * not being rebuilt (another process made it again, or finished). In
 * chunks, so a long outbox never holds Redis for long.
 */
export const restoreScan = Redis.script(
  (budget: string, outbox: string, tree: string, after: string, count: number, made: string) => [
    budget,
    outbox,
    tree,
    after,
    count,
    made
  ],
  {
    numberOfKeys: () => 2,
    lua: `
local rb = redis.call('HGET', KEYS[1], 'rb')
if not rb or string.byte(rb) ~= 114 then return { 'x' } end
-- After the first chunk, the rebuild of the same making only.
if ARGV[4] ~= '' and rb ~= 'r' .. ARGV[4] then return { 'x' } end
local made = tonumber(string.sub(rb, 2))
local path = string.sub(KEYS[1], #ARGV[1] + 4)
local below = path .. '/'
local from = ARGV[2] == '-' and '-' or '(' .. ARGV[2]
local entries = redis.call('XRANGE', KEYS[2], from, '+', 'COUNT', ARGV[3])
local out = { 'ok', string.sub(rb, 2), redis.call('GET', ARGV[1] .. ':rs:' .. path) or '0',
  #entries == tonumber(ARGV[3]) and entries[#entries][1] or '' }
for _, e in ipairs(entries) do
  -- kind, base, budget, tokens, nanos, ... time (lua/ledger.ts)
  local f = {}
  for field in string.gmatch(e[2][2] .. '\\0', '([^%z]*)%z') do f[#f + 1] = field end
  local budget, at = f[3], tonumber(f[10])
  if (budget == path or string.sub(budget, 1, #below) == below) and at < made then
    out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = f[2] .. '@' .. e[1], f[10], f[4], f[5]
  end
end
return out
`
  }
).withReturnType<ReadonlyArray<string>>()

/**
 * Ends a budget's rebuild from the ledger: adds what the ledger says it
 * spent in its window before it was made again (`made`), unless that
 * window has ended since (its generation moved on), and opens it to
 * operations. Answers 1, or 0 if it is not the rebuild of `made` (another
 * process made it again since).
 */
export const restore = Redis.script(
  (budget: string, made: string, tokens: number, nanos: number) => [budget, made, tokens, nanos],
  {
    numberOfKeys: () => 1,
    lua: `
if redis.call('HGET', KEYS[1], 'rb') ~= 'r' .. ARGV[1] then return 0 end
-- A window that ended since it was made (a run restarted it): the sum was the old window's.
if redis.call('HGET', KEYS[1], 'gen') == ARGV[1] then
  redis.call('HINCRBY', KEYS[1], 'tu', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'nu', ARGV[3])
end
redis.call('HSET', KEYS[1], 'rb', 'd' .. ARGV[1])
return 1
`
  }
).withReturnType<number>()
