/*
 * Leases: a hold or a ticket whose process stopped renewing it (it died,
 * or lost Redis) is given back whenever it stands in a request's way, and
 * by snapshots. A run gives back at most S.most_reaped, so a script stays
 * short however many holds a dead process left; one that stops there
 * with more expired (L.more) and a request it would refuse answers
 * "again" instead (levels.ts), and the client runs it once more. So no
 * request is refused, and no snapshot read, while expired holds are left.
 */
export const leases = `
S.most_reaped = 256
function S.leases()
  local L = S.L
  if L then return L end
  -- How many expired leases the run has given back (their removal is
  -- written by finish, so a second look skips them), and whether it
  -- stopped with more left.
  L = { reaped = 0, more = false }
  S.L = L

  -- Gives back up to 64 holds and tickets whose leases ran out, within the
  -- run's bound; true if it found any.
  function L.reap()
    local room = math.min(64, S.most_reaped - L.reaped)
    if room <= 0 then
      L.more = true
      return false
    end
    local H, tree, now = S.holds(), S.tree, S.int(S.now_ms())
    local expired = redis.call('ZRANGEBYSCORE', tree .. ':leases', '-inf', now, 'LIMIT', L.reaped, room)
    L.reaped = L.reaped + #expired
    for _, id in ipairs(expired) do
      if not H.drop(id, true) then H.unleased[#H.unleased + 1] = id end
    end
    if S.level(S.root).wq > 0 then
      for _, ticket in ipairs(redis.call('ZRANGEBYSCORE', tree .. ':tickets', '-inf', now, 'LIMIT', 0, 64)) do
        S.waiting().leave(ticket)
      end
    end
    return #expired > 0
  end

  -- Gives back every expired lease, within the run's bound.
  function L.reap_all()
    while L.reap() do end
    return L
  end

  return L
end
`
