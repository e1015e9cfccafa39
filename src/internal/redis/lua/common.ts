/*
 * What every script of the Redis store starts from: Redis's time, integers
 * formatted exactly, the checks of arguments, and the state of one run.
 * Each module under lua/ is Lua text; scripts.ts joins them into scripts.
 *
 * Redis makes a script's functions anew on every run, and a function costs
 * more to make for each local of the script it uses: so every function is a
 * field of S and reaches the others through S alone, and those that few
 * runs need are made on first use, a group at a time (S.events(),
 * S.windows(), S.waiting(), S.holds(), S.leases(), S.rates()). A run makes about
 * twenty: some microseconds, the price of one copy of each rule.
 */

/** Redis's time, exact integers and checked arguments: all that the smallest scripts need. */
export const time = `
local S = { tree = ARGV[1], root = KEYS[#KEYS] }
-- Redis's time in epoch milliseconds, read once a run, when first needed.
function S.now_ms()
  if not S.now then
    local t = redis.call('TIME')
    S.now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return S.now
end
-- Integers leave Lua as %.0f, exact up to 2^53; 0 first, as -0 would read
-- "-0". string.format costs about as much as a redis.call: numbers that
-- came as arguments are written back as they came.
function S.int(x)
  if x == 0 then return '0' end
  return string.format('%.0f', x)
end

-- Arguments are checked before anything is written: a malformed one fails
-- the script, naming its place in ARGV and its value. (Scripts check at
-- their top level: these are locals, which functions do not reach.)
local function bad(i)
  error({ err = 'ERR invalid argument ' .. i .. ': ' .. tostring(ARGV[i]) })
end
-- ARGV[i] as a whole number in plain digits, within 2^53 (from -1 if
-- least is -1: an unbounded cap, a cron window), and as it came. (Once its
-- digits are checked, s + 0 reads it: Lua's own conversion, cheaper than a
-- call of tonumber.)
local function count(i, least)
  local s = ARGV[i]
  if not s or not string.find(s, least and '^%-?%d+$' or '^%d+$') then bad(i) end
  local x = s + 0
  if x > 9007199254740991 or x < (least or 0) then bad(i) end
  return x, s
end
`

/**
 * The state of one run over a budget tree: ARGV[1] is the tree's key, the
 * last of KEYS its root's.
 */
export const state = `${time}
function S.path_of(key) return string.sub(key, #S.tree + 4) end
`
