-- ack: ARGV[4..] = pairs of (id, token). Finishes each job whose lease token is
-- current; returns one 1/0 per pair (0: stale or unknown, nothing changed).
local out = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local h = k_job(id)
  if holds(h, ARGV[i + 1]) then
    drop_lease(id, h)
    finish(h)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
