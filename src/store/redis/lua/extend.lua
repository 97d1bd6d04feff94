-- extend: ARGV[4] new expiry, ARGV[5..] = pairs of (id, token). Moves the expiry of
-- each lease that is still current; returns one 1/0 per pair.
local out = {}
local exp = ARGV[4]
for i = 5, #ARGV, 2 do
  local id = ARGV[i]
  local h = k_job(id)
  if holds(h, ARGV[i + 1]) then
    redis.call('HSET', h, 'exp', exp)
    redis.call('ZADD', K_LEASES, 'XX', exp, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
