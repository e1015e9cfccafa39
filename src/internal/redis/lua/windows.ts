/*
 * Windows: a budget's `wlen` is its window's length in milliseconds, -1 for
 * a cron schedule, 0 for none; `wend` when the current one ends (0 if no
 * end is known). A cron window's coming ends are in the sorted set
 * `<tree>:b:<path>`, written by the processes that open the budget.
 * A window's end starts the budget afresh, as a reset does.
 */
export const windows = `
function S.windows()
  local W = S.W
  if W then return W end
  W = {}
  S.W = W

  -- A budget starting afresh: nothing used or held, in a new generation, so
  -- that holds taken before are stale.
  function W.afresh(b)
    b.tu, b.nu, b.tr, b.nr = 0, 0, 0, 0
    b.gen = S.int(tonumber(b.gen) + 1)
    b.du, b.dh, b.dg = true, true, true
  end

  -- When the window that holds now ends: the next multiple of its length,
  -- or the first coming end of its schedule; 0 if none is known. Ends
  -- that passed are dropped when the run's writes are made.
  function W.end_of(b)
    local now = S.now_ms()
    if b.wlen > 0 then return (math.floor(now / b.wlen) + 1) * b.wlen end
    if b.wlen == 0 then return 0 end
    local ends = S.tree .. ':b:' .. S.path_of(b.key)
    W.passed = W.passed or {}
    W.passed[ends] = true
    return tonumber(redis.call('ZRANGEBYSCORE', ends, '(' .. S.int(now), '+inf', 'LIMIT', 0, 1)[1] or '0')
  end

  -- A window that has ended: the budget starts afresh until the next end,
  -- and its line is looked at after the step (W.after_step).
  function W.restart(b)
    W.afresh(b)
    b.wend, b.dw = W.end_of(b), true
    if S.listens() then S.events().announce({ t = 'Reset', b = S.path_of(b.key), we = S.int(b.wend) }) end
    S.restarted = S.restarted or {}
    S.restarted[#S.restarted + 1] = b.key
  end

  -- After a step: the lines of budgets whose window restarted are looked at.
  function W.after_step()
    while S.restarted do
      local keys = S.restarted
      S.restarted = nil
      S.wake_all(keys)
    end
  end

  function W.write()
    if not W.passed then return end
    for ends in pairs(W.passed) do redis.call('ZREMRANGEBYSCORE', ends, '-inf', S.int(S.now_ms())) end
    W.passed = nil
  end

  return W
end
`
