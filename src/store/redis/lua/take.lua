-- take: ARGV[4] limit, ARGV[5] generation key, ARGV[6..] queues.
-- For a dispatcher whose leases live in the system of record (the redis_postgres store): takes
-- up to `limit` ready jobs across the queues, lowest score (highest priority, then
-- oldest push) first, and forgets them (their records are deleted, no lease is kept
-- here), so a later push of the same job queues it again.
-- Due delayed jobs are promoted first. Paused queues (the set K_PAUSED) are skipped:
-- their jobs stay ready here until the queue is resumed.
-- Returns { has_generation (1/0), id1, id2, ... }.
local limit = tonumber(ARGV[4])
local PROMOTE_BATCH = 1000

for i = 6, #ARGV do
  local q = ARGV[i]
  local due = redis.call('ZRANGEBYSCORE', k_delayed(q), '-inf', NOW, 'LIMIT', 0, PROMOTE_BATCH)
  for _, id in ipairs(due) do
    redis.call('ZREM', k_delayed(q), id)
    local h = k_job(id)
    make_ready(id, h, q, redis.call('HGET', h, 'pri') or 0)
  end
end

local open = {}
for i = 6, #ARGV do
  if redis.call('SISMEMBER', K_PAUSED, ARGV[i]) == 0 then open[#open + 1] = ARGV[i] end
end

local picked = {}
if #open == 1 then
  local r = redis.call('ZPOPMIN', k_ready(open[1]), limit)
  for j = 1, #r, 2 do picked[#picked + 1] = r[j] end
elseif #open > 1 and limit > 0 then
  local cand = {}
  for _, q in ipairs(open) do
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
-- dispatchers do not wake for jobs that others already took.
for i = 6, #ARGV do
  local q = ARGV[i]
  if redis.call('ZCARD', k_ready(q)) == 0 and redis.call('ZCARD', k_delayed(q)) == 0 then
    redis.call('DEL', k_wake(q))
  end
end

local out = { redis.call('EXISTS', ARGV[5]) }
for _, id in ipairs(picked) do
  redis.call('DEL', k_job(id))
  out[#out + 1] = id
end
return out
