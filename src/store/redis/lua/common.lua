-- Shared helpers, prepended (at compile time) to every job script.
--
-- Calling convention of every job script:
--   ARGV[1] key prefix, ARGV[2] now (ms since the epoch, the caller's clock),
--   ARGV[3] how long a removed job's record is kept (ms); script arguments follow.
-- The key layout mirrors `keys.rs`; change both together.
-- Job ids stay strings (Lua numbers are doubles); tokens and times fit in 2^53.

local P = ARGV[1]
local NOW = tonumber(ARGV[2])
local DONE_TTL = tonumber(ARGV[3])

local K_SEQ = P .. ':seq'
local K_QUEUES = P .. ':queues'
local K_PAUSED = P .. ':paused'

-- A wake list never holds more tokens than this; a burst wakes at most this many waiters.
local WAKE_CAP = 1024
-- Ready scores are (32767 - priority) * 2^37 + seq: priority first, then push order.
local SEQ_SPAN = 137438953472

local function k_job(id) return P .. ':job:' .. id end
local function k_ready(q) return P .. ':q:' .. q .. ':ready' end
local function k_delayed(q) return P .. ':q:' .. q .. ':delayed' end
local function k_wake(q) return P .. ':q:' .. q .. ':wake' end

-- Wakes up to `n` dispatchers blocked on queue `q` (tokens are only hints: a woken
-- dispatcher that finds nothing just waits again).
local function wake(q, n)
  if n <= 0 then return end
  local tokens = {}
  for i = 1, math.min(n, 64) do tokens[i] = '1' end
  redis.call('LPUSH', k_wake(q), unpack(tokens))
  redis.call('LTRIM', k_wake(q), 0, WAKE_CAP - 1)
end

-- Puts a job into its queue's ready set behind every job of the same priority.
local function make_ready(id, h, q, pri)
  local seq = redis.call('INCR', K_SEQ) % SEQ_SPAN
  redis.call('ZADD', k_ready(q), (32767 - tonumber(pri)) * SEQ_SPAN + seq, id)
  redis.call('HSET', h, 'st', 'ready')
end

-- Marks a job removed from dispatch; its record (with the last token) expires later.
local function finish(h)
  redis.call('HSET', h, 'st', 'done')
  redis.call('PEXPIRE', h, DONE_TTL)
end
