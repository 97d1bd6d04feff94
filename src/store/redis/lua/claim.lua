-- claim: ARGV[4] limit, ARGV[5] node, ARGV[6] worker, ARGV[7] lease expiry,
-- ARGV[8..] queues.
-- Promotes due delayed jobs, then leases up to `limit` ready jobs across the queues,
-- lowest score (highest priority, then oldest push) first.
-- Returns { next_due, id1, tok1, id2, tok2, ... } where next_due is the earliest run_at
-- still delayed in these queues, or -1.
local limit = tonumber(ARGV[4])
local node, worker, exp = ARGV[5], ARGV[6], ARGV[7]
-- Bounds the work of one call; the rest is promoted by the next claim.
local PROMOTE_BATCH = 1000

local next_due = -1
for i = 8, #ARGV do
  local q = ARGV[i]
  local due = redis.call('ZRANGEBYSCORE', k_delayed(q), '-inf', NOW, 'LIMIT', 0, PROMOTE_BATCH)
  for _, id in ipairs(due) do
    redis.call('ZREM', k_delayed(q), id)
    local h = k_job(id)
    make_ready(id, h, q, redis.call('HGET', h, 'pri') or 0)
  end
  local first = redis.call('ZRANGE', k_delayed(q), 0, 0, 'WITHSCORES')
  if first[2] then
    local t = tonumber(first[2])
    if next_due < 0 or t < next_due then next_due = t end
  end
end

local picked = {}
if #ARGV == 8 then
  local r = redis.call('ZPOPMIN', k_ready(ARGV[8]), limit)
  for j = 1, #r, 2 do picked[#picked + 1] = r[j] end
elseif limit > 0 then
  local cand = {}
  for i = 8, #ARGV do
    local q = ARGV[i]
    local r = redis.call('ZRANGE', k_ready(q), 0, limit - 1, 'WITHSCORES')
    for j = 1, #r, 2 do cand[#cand + 1] = { r[j], q, tonumber(r[j + 1]) } end
  end
  table.sort(cand, function(a, b) return a[3] < b[3] end)
  for j = 1, math.min(limit, #cand) do
    redis.call('ZREM', k_ready(cand[j][2]), cand[j][1])
    picked[#picked + 1] = cand[j][1]
  end
end

-- A queue with no job left needs no wake tokens: drop stale ones so that blocked
-- claimers do not wake for jobs that others already took.
for i = 8, #ARGV do
  local q = ARGV[i]
  if redis.call('ZCARD', k_ready(q)) == 0 and redis.call('ZCARD', k_delayed(q)) == 0 then
    redis.call('DEL', k_wake(q))
  end
end

local out = { next_due }
for _, id in ipairs(picked) do
  local h = k_job(id)
  local tok = redis.call('HINCRBY', h, 'tok', 1)
  redis.call('HSET', h, 'st', 'leased', 'node', node, 'worker', worker, 'exp', exp)
  redis.call('ZADD', K_LEASES, exp, id)
  redis.call('SADD', k_node(node), id)
  out[#out + 1] = id
  out[#out + 1] = tok
end
return out
