-- push: ARGV[4..] = groups of (id, queue, priority, run_at, epoch).
-- Returns one 1/0 per job: 1 when queued now, 0 when it was already queued, or when
-- Redis holds a newer token than `epoch` (a removed job's record the push is older than).
local out = {}
local woken = {}
for i = 4, #ARGV, 5 do
  local id, q, pri = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local run_at, epoch = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
  local h = k_job(id)
  local v = redis.call('HMGET', h, 'st', 'tok', 'q')
  local st, tok = v[1], tonumber(v[2] or '0')
  -- A record whose queue entry is gone (a key lost on its own) does not count as queued.
  if (st == 'ready' and not redis.call('ZSCORE', k_ready(v[3]), id))
      or (st == 'delayed' and not redis.call('ZSCORE', k_delayed(v[3]), id)) then
    st = nil
  end
  if st == 'ready' or st == 'delayed' or (st and epoch < tok) then
    out[#out + 1] = 0
  else
    if epoch > tok then tok = epoch end
    redis.call('HSET', h, 'q', q, 'pri', pri, 'tok', tok)
    redis.call('PERSIST', h)
    redis.call('SADD', K_QUEUES, q)
    if run_at <= NOW then
      make_ready(id, h, q, pri)
    else
      redis.call('ZADD', k_delayed(q), run_at, id)
      redis.call('HSET', h, 'st', 'delayed')
    end
    -- Waiters on a delayed job wake too, to shorten their sleep to its run_at.
    woken[q] = (woken[q] or 0) + 1
    out[#out + 1] = 1
  end
end
for q, n in pairs(woken) do wake(q, n) end
return out
