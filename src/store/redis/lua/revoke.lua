-- revoke_node: ARGV[4] node. Takes back every lease the node holds (tokens bumped, jobs
-- ready again). Returns the job ids.
local node = ARGV[4]
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', k_node(node))) do
  local h = k_job(id)
  local v = redis.call('HMGET', h, 'st', 'node')
  if v[1] == 'leased' and v[2] == node then
    requeue_fenced(id, h)
    out[#out + 1] = id
  end
end
redis.call('DEL', k_node(node))
return out
