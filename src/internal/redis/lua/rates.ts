/*
 * Rates and concurrency, on a budget's hash: `rt` its rate, a bucket per
 * axis as "<axis>:<amount>:<period ms>:<capacity>" joined by ";" (axis t,
 * n or q: tokens, nano-dollars, requests), `bk` each bucket's level and the
 * time it was last brought to ("<level>:<ms>;..."; full when missing), `mc`
 * its maxConcurrent and `if` its holds in flight (counted always, written
 * with what it holds). The formulas are src/internal/rate.ts's, on Redis's clock; a
 * level is written with 17 digits, so it reads back as it was.
 */
export const rates = `
function S.rates()
  local R = S.R
  if R then return R end
  R = {}
  S.R = R
  local axes = { t = 'tokens', n = 'usd', q = 'requests' }

  -- The buckets of a budget, read once a run.
  function R.of(b)
    local rs = b.rs
    if rs then return rs end
    rs = {}
    local levels = {}
    for level, at in string.gmatch(b.bk or '', '([^:;]+):([^;]+)') do levels[#levels + 1] = { tonumber(level), tonumber(at) } end
    for axis, amount, period, cap in string.gmatch(b.rt, '(%a):(%d+):(%d+):([^;]+)') do
      local kept = levels[#rs + 1]
      cap = tonumber(cap)
      rs[#rs + 1] = {
        axis = axis, name = axes[axis], amount = tonumber(amount), period = tonumber(period), cap = cap,
        level = kept and kept[1] or cap, at = kept and kept[2] or S.now_ms()
      }
    end
    b.rs = rs
    return rs
  end

  -- A bucket brought to now: refilled, never past its capacity.
  function R.refill(r)
    local now = S.now_ms()
    if now > r.at then
      if r.level < r.cap then r.level = math.min(r.cap, r.level + (now - r.at) * r.amount / r.period) end
      r.at = now
    end
  end

  function R.amount(r, t, n)
    if r.axis == 't' then return t elseif r.axis == 'n' then return n end
    return 1
  end

  -- How long until a bucket holds amount, in whole milliseconds.
  function R.wait(r, amount)
    if r.level >= amount then return 0 end
    return math.ceil((amount - r.level) * r.period / r.amount)
  end

  -- What else than its caps keeps a budget from admitting t, n (holding:
  -- a hold): { axis, lent, capacity, kind } for the first limit that does,
  -- the place of the bucket last; alone, only a bucket it is larger than.
  function R.refusal(b, t, n, alone, holding)
    local rs = b.rt and R.of(b) or {}
    for i = 1, #rs do
      local r = rs[i]
      local amount = R.amount(r, t, n)
      if amount > r.cap then return { r.name, '0', R.float(r.cap), 'rate', i, amount } end
    end
    if alone then return nil end
    if holding and b.mc >= 0 and b.inf >= b.mc then return { 'requests', S.int(b.inf), S.int(b.mc), 'concurrency', 0, 1 } end
    for i = 1, #rs do
      local r = rs[i]
      R.refill(r)
      local amount = R.amount(r, t, n)
      if r.level < amount then return { r.name, R.float(r.cap - r.level), R.float(r.cap), 'rate', i, amount } end
    end
    return nil
  end

  -- How long until every rate of the chain's levels from place on admits t, n.
  function R.longest_wait(keys, from, t, n)
    local longest = 0
    for i = from, #keys do
      local b = S.levels[keys[i]] or S.level(keys[i])
      if b.rt then
        for _, r in ipairs(R.of(b)) do
          R.refill(r)
          longest = math.max(longest, R.wait(r, R.amount(r, t, n)))
        end
      end
    end
    return longest
  end

  -- Takes an admitted request from a budget's buckets (refilled by R.refusal).
  function R.take(b, t, n)
    for _, r in ipairs(R.of(b)) do r.level = r.level - R.amount(r, t, n) end
    b.dr = true
  end

  -- Gives t, n back to a budget's buckets (negative: takes them, as debt),
  -- up to each one's capacity; a request is never given back.
  function R.give(b, t, n)
    for _, r in ipairs(R.of(b)) do
      if r.axis ~= 'q' then
        R.refill(r)
        r.level = math.min(r.cap, r.level + (r.axis == 't' and t or n))
      end
    end
    b.dr = true
  end

  -- The levels as the hash keeps them.
  function R.levels(b)
    local words = {}
    for i, r in ipairs(R.of(b)) do words[i] = R.float(r.level) .. ':' .. S.int(r.at) end
    return table.concat(words, ';')
  end

  -- A number that may have a fraction, written so that it reads back exactly.
  function R.float(x)
    if x == math.floor(x) then return S.int(x) end
    return string.format('%.17g', x)
  end

  return R
end
`
