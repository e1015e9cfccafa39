/*
 * Waiting requests line up first come, first served across every process:
 * each has a ticket (an id its process made) in the line `<tree>:q:<path>`
 * of the first budget of its chain that holds it back, scored by its place
 * (the root's `seq` when it lined up), is described at `<tree>:w:<ticket>`
 * (t, n: what it asks; o: its budget; l: its line; s: its place) and is
 * kept alive by a lease in `<tree>:tickets`. The root's `wq` counts the
 * tree's tickets. Runs that free room in a budget look at its line's head:
 * one that now fits is woken, with its ticket on `<tree>:wake` (by
 * finish), and one held back higher up moves to that line.
 */
export const waiting = `
-- Looks at the lines of these budgets, if anyone waits in the tree.
function S.wake_all(keys)
  local r = S.levels[S.root] or S.level(S.root)
  if r.wq > 0 then S.waiting().wake_lines(keys) end
end

function S.waiting()
  local Q = S.Q
  if Q then return Q end
  -- Tickets woken, in order (woken) and as a set (told).
  Q = { woken = {}, told = {} }
  S.Q = Q

  -- The keys of a budget's chain, from the budget up to the root.
  function Q.chain_of(path)
    local at = S.tree .. ':n:'
    local keys, cuts = { at .. path }, {}
    for cut in string.gmatch(path, '()/') do cuts[#cuts + 1] = cut end
    for i = #cuts, 1, -1 do keys[#keys + 1] = at .. string.sub(path, 1, cuts[i] - 1) end
    return keys
  end

  function Q.line_of(path) return S.tree .. ':q:' .. path end
  function Q.ticket_of(ticket) return S.tree .. ':w:' .. ticket end
  -- The head of a budget's line and its place, or nil.
  function Q.head_of(path)
    local head = redis.call('ZRANGE', Q.line_of(path), 0, 0, 'WITHSCORES')
    return head[1], tonumber(head[2])
  end
  -- (Never below 0: a root made again after a loss counted its tickets anew.)
  function Q.counted(by)
    local r = S.level(S.root)
    r.wq, r.dq = math.max(0, r.wq + by), true
  end

  -- Whether a budget keeps a waiter of t, n out: its caps, its rate or its
  -- holds in flight; alone, only what no release, reset or refill could
  -- ever make room for.
  function Q.blocks(b, t, n, alone)
    if S.over(b, t, n, alone) then return true end
    return (b.rt ~= nil or b.mc >= 0) and S.rates().refusal(b, t, n, alone, true) ~= nil
  end

  -- The first budget of a waiter's chain that holds it back: one it does
  -- not fit, or whose line has an earlier ticket in it; nil if none.
  function Q.holds_back(seq, t, n, path)
    for _, key in ipairs(Q.chain_of(path)) do
      local head, place = Q.head_of(S.path_of(key))
      if head and place < seq then return key end
      if Q.blocks(S.level(key), t, n) then return key end
    end
    return nil
  end

  function Q.move(ticket, from, to, seq)
    redis.call('ZREM', Q.line_of(from), ticket)
    redis.call('ZADD', Q.line_of(to), seq, ticket)
    redis.call('HSET', Q.ticket_of(ticket), 'l', to)
  end

  -- Whether a waiter is larger than a cap of its chain: no release or
  -- reset could ever make room (a cap was lowered while it waited).
  function Q.never_fits(t, n, path)
    for _, key in ipairs(Q.chain_of(path)) do
      if Q.blocks(S.level(key), t, n, true) then return true end
    end
    return false
  end

  -- Calls a ticket: its waiter looks again (finish tells its process).
  function Q.call(ticket)
    Q.told[ticket] = true
    Q.woken[#Q.woken + 1] = ticket
  end

  -- Wakes every ticket of the tree that can now never fit (a cap was
  -- lowered), wherever it waits: behind another, or in a line below.
  function Q.wake_hopeless()
    local tickets = redis.call('ZRANGE', S.tree .. ':tickets', 0, -1)
    for _, ticket in ipairs(tickets) do
      if not Q.told[ticket] then
        local w = redis.call('HMGET', Q.ticket_of(ticket), 't', 'n', 'o')
        if w[1] and Q.never_fits(tonumber(w[1]), tonumber(w[2]), w[3]) then Q.call(ticket) end
      end
    end
  end

  -- Wakes the head of a budget's line if it now fits its whole chain, or
  -- never can (to be refused); a head held back higher up moves to that
  -- line, and the next head is considered.
  function Q.wake(path)
    local at = S.tree .. ':n:' .. path
    while true do
      local head, place = Q.head_of(path)
      if not head or Q.told[head] then return end
      local w = redis.call('HMGET', Q.ticket_of(head), 't', 'n', 'o')
      if not w[1] then
        -- A ticket nothing is known of cannot be served: it leaves.
        redis.call('ZREM', Q.line_of(path), head)
        redis.call('ZREM', S.tree .. ':tickets', head)
        Q.counted(-1)
      else
        local t, n = tonumber(w[1]), tonumber(w[2])
        local blocker = not Q.never_fits(t, n, w[3]) and Q.holds_back(place, t, n, w[3]) or nil
        if blocker == at then
          -- Held back by a rate: woken to look again, its wait as it is now.
          if S.level(at).rt then Q.call(head) end
          return
        end
        if blocker == nil then return Q.call(head) end
        local to = S.path_of(blocker)
        Q.move(head, path, to, place)
        -- The head of a line that time frees (a rate, a window): woken to
        -- look again, and so be told when.
        local moved = S.level(blocker)
        if (moved.rt or moved.wlen ~= 0) and Q.head_of(to) == head then Q.call(head) end
      end
    end
  end
  function Q.wake_lines(keys)
    for _, key in ipairs(keys) do Q.wake(S.path_of(key)) end
  end

  -- A ticket leaving its line for good; the line may serve its next head.
  function Q.leave(ticket)
    local at = redis.call('HGET', Q.ticket_of(ticket), 'l')
    if not at then return end
    redis.call('ZREM', Q.line_of(at), ticket)
    redis.call('ZREM', S.tree .. ':tickets', ticket)
    redis.call('DEL', Q.ticket_of(ticket))
    Q.counted(-1)
    Q.wake(at)
  end

  function Q.write()
    if #Q.woken > 0 then redis.call('PUBLISH', S.tree .. ':wake', table.concat(Q.woken, ' ')) end
    Q.woken = {}
  end

  return Q
end
`
