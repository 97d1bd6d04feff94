-- restore_lease: ARGV[4..] = groups of (id, queue, priority, token, node, worker, expiry).
-- Recreates a lease known to the system of record, unless Redis already holds the same
-- or a newer token for the job (then Redis is ahead and wins). Returns one 1/0 per group.
local out = {}
for i = 4, #ARGV, 7 do
  local id, q, pri, tok = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local node, worker, exp = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  local h = k_job(id)
  local v = redis.call('HMGET', h, 'st', 'tok', 'q')
  if v[1] and tonumber(v[2] or '0') >= tok then
    out[#out + 1] = 0
  else
    if v[1] == 'ready' then redis.call('ZREM', k_ready(v[3]), id) end
    if v[1] == 'delayed' then redis.call('ZREM', k_delayed(v[3]), id) end
    if v[1] == 'leased' then drop_lease(id, h) end
    redis.call('HSET', h, 'q', q, 'pri', pri, 'tok', tok, 'st', 'leased',
      'node', node, 'worker', worker, 'exp', exp)
    redis.call('PERSIST', h)
    redis.call('SADD', K_QUEUES, q)
    redis.call('ZADD', K_LEASES, exp, id)
    redis.call('SADD', k_node(node), id)
    out[#out + 1] = 1
  end
end
return out
