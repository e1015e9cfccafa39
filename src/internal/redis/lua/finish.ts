/*
 * The end of a run. Nothing a run changes in budgets, holds and leases is
 * written before its end, so a refusal or an error on the way leaves
 * nothing half-written. (Lines and tickets, which the waiting functions
 * read back as they go, are written at once.) A lost budget is never
 * written: a hash of a few fields would pass for one with its state.
 */
export const finish = `
-- Every run ends here: what it changed is written, each budget in one call
-- (rarely more), then its events and the tickets it woke are told.
function S.finish(result)
  if S.W then S.W.after_step() end
  local levels, int = S.levels, S.int
  for i = 1, #levels do
    local b = levels[i]
    -- (A level being rebuilt from the ledger has its hash: commits charge it.)
    if not b.lost or b.restoring then
      if b.dr then
        -- A rate's buckets in the same call as what the run charged or held.
        local f = { 'bk', S.rates().levels(b) }
        if b.du then f[3], f[4], f[5], f[6] = 'tu', int(b.tu), 'nu', int(b.nu) end
        if b.dh then
          local at = #f
          f[at + 1], f[at + 2], f[at + 3], f[at + 4], f[at + 5], f[at + 6] = 'tr', int(b.tr), 'nr', int(b.nr), 'if', int(b.inf)
        end
        redis.call('HSET', b.key, unpack(f))
      elseif b.du and b.dh then
        redis.call('HSET', b.key, 'tu', int(b.tu), 'nu', int(b.nu), 'tr', int(b.tr), 'nr', int(b.nr), 'if', int(b.inf))
      elseif b.du then
        redis.call('HSET', b.key, 'tu', int(b.tu), 'nu', int(b.nu))
      elseif b.dh then
        redis.call('HSET', b.key, 'tr', int(b.tr), 'nr', int(b.nr), 'if', int(b.inf))
      end
      if b.dg then redis.call('HSET', b.key, 'gen', b.gen) end
      if b.dw then redis.call('HSET', b.key, 'wend', int(b.wend)) end
      if b.dq then redis.call('HSET', b.key, 'wq', int(b.wq)) end
    end
  end
  if S.H then S.H.write() end
  if S.I then S.I.write() end
  if S.W then S.W.write() end
  if S.E then S.E.write() end
  if S.Q then S.Q.write() end
  return result
end
`
