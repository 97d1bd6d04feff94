-- heartbeat: KEYS[1] the member's heartbeat key, KEYS[2] the registry ZSET;
-- ARGV[1] member, ARGV[2] ttl (ms), ARGV[3] registry ttl (ms).
-- Uses the server clock so that every heartbeat and reader agrees on "now".
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], now, 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
redis.call('PEXPIRE', KEYS[2], math.max(tonumber(ARGV[3]), ttl))
return now
