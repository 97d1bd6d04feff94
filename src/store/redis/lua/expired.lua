-- expired: ARGV[4] limit. Takes back up to `limit` leases that expired before now:
-- tokens are bumped and the jobs are ready again. Returns { id1, lapsed_tok1, ... }.
local out = {}
local ids = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', '(' .. ARGV[2], 'LIMIT', 0, tonumber(ARGV[4]))
for _, id in ipairs(ids) do
  local h = k_job(id)
  local tok = redis.call('HGET', h, 'tok')
  requeue_fenced(id, h)
  out[#out + 1] = id
  out[#out + 1] = tonumber(tok)
end
return out
