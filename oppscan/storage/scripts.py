"""The atomic steps of a scan's life, as Lua scripts.

Every write of a running scan checks the writer's epoch (a fencing token), so a
stale owner can never overwrite its successor.
"""

from __future__ import annotations

# Lease deadlines use Redis's clock, so hosts whose clocks differ still agree.
NOW_MS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: scan, running, pending, user_scans
# ARGV: scan_id, lease ttl ms (0: queued for any worker), user score, field, value, ...
CREATE = (
    NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  local deadline = now_ms() + ttl
  redis.call('HSET', KEYS[1], 'lease', deadline)
  redis.call('ZADD', KEYS[2], deadline, ARGV[1])
else
  redis.call('ZADD', KEYS[3], now_ms(), ARGV[1])
end
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
return 1
"""
)

# KEYS: running, pending. ARGV: limit.
# Scans whose lease lapsed, then queued scans, oldest first.
CLAIMABLE = (
    NOW_MS
    + """
local limit = tonumber(ARGV[1])
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms(), 'LIMIT', 0, limit)
local queued = redis.call('ZRANGE', KEYS[2], 0, limit - 1)
for _, id in ipairs(queued) do lapsed[#lapsed + 1] = id end
return lapsed
"""
)

# KEYS: scan, running, pending. ARGV: scan_id, lease ttl ms, owner, now (ISO).
# Takes a queued scan or one whose lease lapsed: a new epoch fences the old owner.
# Returns the whole hash (with the new epoch), or false when not claimable.
CLAIM = (
    NOW_MS
    + """
local state = redis.call('HMGET', KEYS[1], 'status', 'lease')
local status, lease = state[1], tonumber(state[2] or '0')
if status ~= 'queued' and status ~= 'scanning' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  return false
end
local now = now_ms()
if status == 'scanning' and lease > now then return false end
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
local deadline = now + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[3], 'lease', deadline, 'status', 'scanning')
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[4], 'updated_at', ARGV[4])
end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], deadline, ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""
)

# KEYS: running, scan, scan, ... ARGV: lease ttl ms, id, epoch, id, epoch, ...
# Renews every lease this owner still holds in one round trip.
# Per scan: 0 lost (another epoch owns it, or it expired), 1 renewed (or finished by
# this owner meanwhile), 2 renewed and cancel requested.
RENEW = (
    NOW_MS
    + """
local deadline = now_ms() + tonumber(ARGV[1])
local out = {}
for i = 2, #KEYS do
  local id, epoch = ARGV[2 * i - 2], ARGV[2 * i - 1]
  local state = redis.call('HMGET', KEYS[i], 'epoch', 'status', 'cancel')
  if state[1] ~= epoch then
    out[#out + 1] = 0
  elseif state[2] == 'scanning' then
    redis.call('HSET', KEYS[i], 'lease', deadline)
    redis.call('ZADD', KEYS[1], deadline, id)
    out[#out + 1] = (state[3] == '1') and 2 or 1
  else
    out[#out + 1] = 1  -- finished meanwhile by its owner: nothing to renew, nothing lost
  end
end
return out
"""
)

# KEYS: scan, running. ARGV: scan_id, epoch.
# Hands the scan back at once: its lease lapses now, so any worker may claim it.
RELEASE = """
local state = redis.call('HMGET', KEYS[1], 'epoch', 'status')
if state[1] ~= ARGV[2] or state[2] ~= 'scanning' then return 0 end
redis.call('HSET', KEYS[1], 'lease', '0', 'owner', '')
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""

# KEYS: dedup, user_active.
# ARGV: expected id ('' for none), new id, active limit (0: none), scan key before id, after id.
# Makes the new scan the one for these parameters, and one of the user's active
# scans: 1 done, 0 someone else's scan won the pointer, -1 the user is at the limit.
CLAIM_DEDUP = """
local current = redis.call('GET', KEYS[1])
if not ((current == false and ARGV[1] == '') or current == ARGV[1]) then return 0 end
local limit = tonumber(ARGV[3])
if limit > 0 and redis.call('SCARD', KEYS[2]) >= limit then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('EXISTS', ARGV[4] .. id .. ARGV[5]) == 0 then redis.call('SREM', KEYS[2], id) end
  end
  if redis.call('SCARD', KEYS[2]) >= limit then return -1 end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[2])
return 1
"""

# KEYS: scan, running, pending, user_scans, user_active. ARGV: scan_id.
DISCARD = """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('SREM', KEYS[5], ARGV[1])
return 1
"""

# KEYS: counter. ARGV: limit, window seconds.
# A fixed window shared by every worker; returns 0, or the seconds to wait.
RATE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if count > tonumber(ARGV[1]) then return math.max(1, redis.call('TTL', KEYS[1])) end
return 0
"""

# KEYS: scan. ARGV: epoch, field, result json, opportunities found, updated_at.
# Returns {ok, completed, found, updated_at, cancel}; ok = -1 when fenced off
# (another epoch owns the scan, or it is finished already).
# A strategy's result is recorded once: a replay leaves the counts alone.
RECORD_STRATEGY = """
local owner = redis.call('HMGET', KEYS[1], 'epoch', 'status')
if owner[1] ~= ARGV[1] or owner[2] ~= 'scanning' then return {-1, 0, 0, '', 0} end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'completed', 1)
  redis.call('HINCRBY', KEYS[1], 'found', ARGV[4])
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[5], 'status', 'scanning')
end
local state = redis.call('HMGET', KEYS[1], 'completed', 'found', 'updated_at', 'cancel')
return {1, tonumber(state[1]), tonumber(state[2]), state[3], tonumber(state[4] or '0')}
"""

# KEYS: scan, running, pending, dedup, user_active.
# ARGV: epoch, status, results, completed_at, error ('' for none), ttl, scan_id.
# The results land in the same step as the status flip, and every key of the
# scan gets its retention TTL together.
FINISH = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'results', ARGV[3],
           'completed_at', ARGV[4], 'updated_at', ARGV[4], 'lease', '0')
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[5]) end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[7])
redis.call('ZREM', KEYS[3], ARGV[7])
if redis.call('GET', KEYS[4]) == ARGV[7] then redis.call('EXPIRE', KEYS[4], ARGV[6]) end
redis.call('SREM', KEYS[5], ARGV[7])
return 1
"""

# KEYS: scan. ARGV: user. Returns the status, or false when no such scan of user.
REQUEST_CANCEL = """
local state = redis.call('HMGET', KEYS[1], 'user', 'status')
if state[1] ~= ARGV[1] then return false end
if state[2] == 'queued' or state[2] == 'scanning' then
  redis.call('HSET', KEYS[1], 'cancel', '1')
end
return state[2]
"""
