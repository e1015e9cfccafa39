/*
 * Events, on the channel `<tree>:events` as JSON: published only while some
 * process listens (the root's `lq`), and only once the run's writes are
 * made (finish), in the order they happened.
 */
export const events = `
-- Whether anyone listens: callers ask first, so no one builds an event no
-- one hears. Known once the root is read, or asked for here.
function S.listens()
  if S.listening == nil then
    local lq = tonumber(redis.call('HGET', S.root, 'lq') or '0')
    S.listening = lq > 0 and lq > S.now_ms()
  end
  return S.listening
end

function S.events()
  local E = S.E
  if E then return E end
  E = { published = {} }
  S.E = E

  function E.announce(event) E.published[#E.published + 1] = cjson.encode(event) end

  -- A refusal (see refusal) as its answer, { 'x', axis, used + held, cap,
  -- level }, and as an event.
  function E.exceeded(keys, r, t, n)
    if S.listens() then
      E.announce({
        t = 'Exceeded', b = S.path_of(keys[r[4]]), l = r[5] ~= 'cap' and r[5] or nil, a = r[1],
        k = r[2], c = r[3],
        tk = r[1] == 'requests' and '1' or S.int(t), n = S.int(n),
        r = r[6] ~= '-' and r[6] or nil
      })
    end
    return { 'x', r[1], r[2], r[3], r[4], r[5], r[6] }
  end

  -- ThresholdCrossed for each threshold (the budget's th, fractions of its
  -- caps) that a charge took its use past from tu, nu: tokens, then dollars.
  function E.cross(b, tu, nu)
    if b.th == nil then b.th = redis.call('HGET', b.key, 'th') or '' end
    E.crossed(b, 'tokens', tu, b.tu, b.tc)
    E.crossed(b, 'usd', nu, b.nu, b.nc)
  end
  function E.crossed(b, axis, before, used, cap)
    if cap < 0 then return end
    for th in string.gmatch(b.th, '[^,]+') do
      local f = tonumber(th)
      if before < f * cap and used >= f * cap then
        E.announce({ t = 'ThresholdCrossed', b = S.path_of(b.key), a = axis, th = th, u = S.int(used), c = S.int(cap) })
      end
    end
  end

  function E.write()
    for _, event in ipairs(E.published) do redis.call('PUBLISH', S.tree .. ':events', event) end
    E.published = {}
  end

  return E
end
`
