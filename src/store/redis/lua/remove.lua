-- remove: ARGV[4..] ids. Drops each job from its queue (cancelled, discarded or
-- finished elsewhere). Returns one 1/0 per id: 0 when it was not queued.
local out = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local h = k_job(id)
  local v = redis.call('HMGET', h, 'st', 'q')
  local st, q = v[1], v[2]
  if st == 'ready' then
    redis.call('ZREM', k_ready(q), id)
  elseif st == 'delayed' then
    redis.call('ZREM', k_delayed(q), id)
  end
  if st == 'ready' or st == 'delayed' then
    finish(h)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
