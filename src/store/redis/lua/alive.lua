-- alive: KEYS[1] a registry ZSET. Members whose heartbeat has not expired, by the
-- server clock; with ARGV[1] = 'scores', each followed by its expiry (server ms).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] == 'scores' then
    return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES')
end
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
