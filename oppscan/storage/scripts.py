"""The atomic steps of a scan's life, as Lua scripts.

Every write of a running scan checks the writer's epoch (a fencing token), so a
stale owner can never overwrite its successor.
"""

from __future__ import annotations

# KEYS: scan, index (running|pending), user_scans
# ARGV: scan_id, index score, user score, field, value, field, value, ...
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
"""

# KEYS: dedup. ARGV: expected id ('' for none), new id.
CLAIM_DEDUP = """
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: scan, running, pending, user_scans. ARGV: scan_id.
DISCARD = """
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return 1
"""

# KEYS: scan. ARGV: epoch, field, result json, opportunities found, updated_at.
# Returns {ok, completed, found, updated_at, cancel}; ok = -1 when fenced off.
# A strategy's result is recorded once: a replay leaves the counts alone.
RECORD_STRATEGY = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {-1, 0, 0, '', 0} end
if redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'completed', 1)
  redis.call('HINCRBY', KEYS[1], 'found', ARGV[4])
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[5], 'status', 'scanning')
end
local state = redis.call('HMGET', KEYS[1], 'completed', 'found', 'updated_at', 'cancel')
return {1, tonumber(state[1]), tonumber(state[2]), state[3], tonumber(state[4] or '0')}
"""

# KEYS: scan, running, pending, dedup.
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
