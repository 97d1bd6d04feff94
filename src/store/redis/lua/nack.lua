-- nack: ARGV[4..] = groups of (id, token, run_at). Gives each job whose lease token is
-- current back to its queue, to run again at run_at; returns one 1/0 per group.
local out = {}
for i = 4, #ARGV, 3 do
  local id, run_at = ARGV[i], tonumber(ARGV[i + 2])
  local h = k_job(id)
  if holds(h, ARGV[i + 1]) then
    drop_lease(id, h)
    local v = redis.call('HMGET', h, 'q', 'pri')
    if run_at <= NOW then
      make_ready(id, h, v[1], v[2] or 0)
    else
      redis.call('ZADD', k_delayed(v[1]), run_at, id)
      redis.call('HSET', h, 'st', 'delayed')
    end
    wake(v[1], 1)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
