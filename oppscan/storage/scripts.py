"""The atomic steps of a scan's life, as Lua scripts.

Every write of a running scan checks the writer's epoch (a fencing token: a
generation and a tag of the owner's own), so a stale owner can never overwrite
its successor, and two owners never share a token even when Redis forgets a
claim. A finished scan is never written again.
"""

from __future__ import annotations

from typing import Any, cast

from redis.commands.core import Script


def lua(text: str) -> Script:
    """A script that runs on the client each call names (the client may be made later)."""
    return Script(cast(Any, None), text.encode())


# Lease deadlines use Redis's clock, so hosts whose clocks differ still agree.
NOW_MS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# How a scan's record stands for the owner holding epoch (number, tag):
#   'ours'   it runs the scan: it may write;
#   'done'   it finished the scan itself (a write sent again after a timeout);
#   'lost'   Redis forgot its claim (no record, or an older running one): the
#            owner writes back what it holds;
#   'fenced' another owner holds the scan, or someone else finished it.
STANDING = """
local function standing(key, number, tag)
  local s = redis.call('HMGET', key, 'epoch', 'epoch_tag', 'status')
  if not s[1] then return 'lost' end
  local running = s[3] == 'scanning' or s[3] == 'queued'
  if s[1] == number and s[2] == tag then
    if running then return 'ours' end
    return 'done'
  end
  if running and tonumber(s[1]) < tonumber(number) then return 'lost' end
  return 'fenced'
end
"""

# Timestamps of one format compare as text; a field a client sees never goes back.
LATER = """
local function later(a, b)
  if a and a > b then return a end
  return b
end
"""

# KEYS: dedup, user_active, user_scans, running, pending, new scan.
# ARGV: new id, lease ttl ms (0: queued for any worker), score, force_refresh (1/0),
#       active limit (0: none), a scan key's text before its id, field, value, ...
# One step decides and registers: join the identical scan that runs (unless a
# cancel is pending), reuse a complete one (unless refreshing), or register a new
# scan within the user's active limit. A retry after a timeout joins the scan
# the first attempt registered. Returns {kind, scan id, status}.
REGISTER = (
    NOW_MS
    + """
local current = redis.call('GET', KEYS[1])
if current then
  local s = redis.call('HMGET', ARGV[6] .. current, 'status', 'cancel')
  if (s[1] == 'queued' or s[1] == 'scanning') and s[2] ~= '1' then
    return {'joined', current, s[1]}
  end
  if s[1] == 'complete' and ARGV[4] ~= '1' then return {'reused', current, s[1]} end
end
local limit = tonumber(ARGV[5])
if limit > 0 and redis.call('SCARD', KEYS[2]) >= limit then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('EXISTS', ARGV[6] .. id) == 0 then redis.call('SREM', KEYS[2], id) end
  end
  if redis.call('SCARD', KEYS[2]) >= limit then return {'limited', '', ''} end
end
redis.call('HSET', KEYS[6], unpack(ARGV, 7))
local status = 'queued'
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  status = 'scanning'
  local deadline = now_ms() + ttl
  redis.call('HSET', KEYS[6], 'lease', deadline)
  redis.call('ZADD', KEYS[4], deadline, ARGV[1])
else
  redis.call('ZADD', KEYS[5], now_ms(), ARGV[1])
end
-- The index lives while the user has an active scan; trim a few ids that expired.
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, 3)) do
  if redis.call('EXISTS', ARGV[6] .. id) == 0 then redis.call('ZREM', KEYS[3], id) end
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('PERSIST', KEYS[3])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[1])
return {'created', ARGV[1], status}
"""
)

# KEYS: scan. ARGV: epoch, tag, the owner's strategy states.
# Which strategies run now, written by their owner only (the others' states change
# with their results). Returns 1 written (or finished by this owner meanwhile), 0
# fenced off, -1 Redis forgot the claim.
WRITE_STATES = (
    STANDING
    + """
local st = standing(KEYS[1], ARGV[1], ARGV[2])
if st == 'done' then return 1 end
if st == 'lost' then return -1 end
if st ~= 'ours' then return 0 end
redis.call('HSET', KEYS[1], 'states', ARGV[3])
return 1
"""
)

# KEYS: the running indexes of some shards, then their pending indexes. ARGV: limit.
# Returns {lapsed, queued}: the `limit` scans whose lease lapsed longest ago, and
# the `limit` queued longest, over these shards, oldest first; each a flat list
# of id, score (a lease deadline or a creation time, in ms).
CLAIMABLE = (
    NOW_MS
    + """
local limit, now, shards = tonumber(ARGV[1]), now_ms(), #KEYS / 2
local function oldest(first, last, range)
  local all = {}
  for i = first, last do
    local found = range(KEYS[i])
    for j = 1, #found, 2 do all[#all + 1] = {found[j], found[j + 1], tonumber(found[j + 1])} end
  end
  table.sort(all, function(a, b) return a[3] < b[3] end)
  local out = {}
  for k = 1, math.min(limit, #all) do
    out[#out + 1] = all[k][1]
    out[#out + 1] = all[k][2]
  end
  return out
end
local lapsed = oldest(1, shards, function(key)
  return redis.call('ZRANGEBYSCORE', key, '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
end)
local queued = oldest(shards + 1, #KEYS, function(key)
  return redis.call('ZRANGE', key, 0, limit - 1, 'WITHSCORES')
end)
return {lapsed, queued}
"""
)

# KEYS: scan, running, pending. ARGV: scan_id, lease ttl ms, owner, now (ISO), tag.
# Takes a queued scan or one whose lease lapsed: a new epoch fences the old owner.
# The same claim sent again (its answer timed out) finds its own tag and answers
# again. Returns the whole hash, or false when not claimable.
CLAIM = (
    NOW_MS
    + """
local state = redis.call('HMGET', KEYS[1], 'status', 'lease', 'epoch_tag')
local status, lease = state[1], tonumber(state[2] or '0')
local now = now_ms()
local deadline = now + tonumber(ARGV[2])
if status == 'scanning' and state[3] == ARGV[5] then
  redis.call('HSET', KEYS[1], 'lease', deadline)
  redis.call('ZADD', KEYS[2], deadline, ARGV[1])
  return redis.call('HGETALL', KEYS[1])
end
if status ~= 'queued' and status ~= 'scanning' then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  return false
end
if status == 'scanning' and lease > now then return false end
redis.call('HINCRBY', KEYS[1], 'epoch', 1)
redis.call('HSET', KEYS[1], 'epoch_tag', ARGV[5], 'owner', ARGV[3], 'lease', deadline,
           'status', 'scanning')
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'started_at', ARGV[4], 'updated_at', ARGV[4])
end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[2], deadline, ARGV[1])
return redis.call('HGETALL', KEYS[1])
"""
)

# KEYS: running, scan, running, scan, ... (each scan with its shard's running index).
# ARGV: lease ttl ms, id, epoch, tag, id, epoch, tag, ...
# Renews every lease this owner still holds in one round trip. Per scan:
# 0 lost (another owner holds it), 1 renewed (or finished by this owner
# meanwhile), 2 renewed and cancel requested, 3 Redis forgot the claim.
RENEW = (
    NOW_MS
    + STANDING
    + """
local deadline = now_ms() + tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS / 2 do
  local running, key = KEYS[2 * i - 1], KEYS[2 * i]
  local id, epoch, tag = ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1]
  local st = standing(key, epoch, tag)
  if st == 'ours' then
    redis.call('HSET', key, 'lease', deadline)
    redis.call('ZADD', running, deadline, id)
    out[#out + 1] = (redis.call('HGET', key, 'cancel') == '1') and 2 or 1
  elseif st == 'done' then
    out[#out + 1] = 1
  elseif st == 'lost' then
    out[#out + 1] = 3
  else
    out[#out + 1] = 0
  end
end
return out
"""
)

# KEYS: scan, running. ARGV: scan_id, epoch, tag.
# Hands the scan back at once: its lease lapses now, so any worker may claim it.
# Returns 1 handed back, 0 not ours, -1 Redis forgot the claim (write it back first).
RELEASE = (
    STANDING
    + """
local st = standing(KEYS[1], ARGV[2], ARGV[3])
if st == 'lost' then return -1 end
if st ~= 'ours' then return 0 end
redis.call('HSET', KEYS[1], 'lease', '0', 'owner', '')
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
"""
)

# KEYS: counter. ARGV: limit, window seconds.
# A fixed window shared by every worker; returns 0, or the seconds to wait.
RATE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if count > tonumber(ARGV[1]) then return math.max(1, redis.call('TTL', KEYS[1])) end
return 0
"""

# KEYS: scan. ARGV: epoch, tag, field, result json, opportunities found, updated_at,
#       results the owner holds as durable, the owner's strategy states ('' to keep).
# Returns {code, completed, found, updated_at, cancel}: code 1 written (or written
# before: a replay leaves the counts alone), 0 fenced off, -1 Redis forgot the claim
# or some of the owner's results (it lost its last writes).
RECORD_STRATEGY = (
    STANDING
    + LATER
    + """
local st = standing(KEYS[1], ARGV[1], ARGV[2])
if st == 'ours' and tonumber(redis.call('HGET', KEYS[1], 'completed')) < tonumber(ARGV[7]) then
  st = 'lost'
end
if st == 'lost' then return {-1, 0, 0, '', 0} end
if st ~= 'ours' then return {0, 0, 0, '', 0} end
if redis.call('HSETNX', KEYS[1], ARGV[3], ARGV[4]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'completed', 1)
  redis.call('HINCRBY', KEYS[1], 'found', ARGV[5])
  local stamp = later(redis.call('HGET', KEYS[1], 'updated_at'), ARGV[6])
  redis.call('HSET', KEYS[1], 'updated_at', stamp)
end
if ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'states', ARGV[8]) end
local state = redis.call('HMGET', KEYS[1], 'completed', 'found', 'updated_at', 'cancel')
return {1, tonumber(state[1]), tonumber(state[2]), state[3], tonumber(state[4] or '0')}
"""
)

# KEYS: scan, running, pending, dedup, user_active, user_scans.
# ARGV: epoch, tag, status, results, completed_at, error ('' for none), ttl, scan_id,
#       a scan key's text before its id, results the final document counts,
#       expires_at ('' for none), final strategy states ('' to keep).
# The results land in the same step as the status flip, and every key of the
# scan gets its retention TTL together; the user's index expires with the last
# of the user's scans. Returns 1 finished (now or before, by this owner), 0
# fenced off, -1 Redis forgot the claim.
FINISH = (
    STANDING
    + LATER
    + """
local st = standing(KEYS[1], ARGV[1], ARGV[2])
if st == 'done' then return 1 end
if st == 'ours' and tonumber(redis.call('HGET', KEYS[1], 'completed')) < tonumber(ARGV[10]) then
  st = 'lost'
end
if st == 'lost' then return -1 end
if st ~= 'ours' then return 0 end
local ttl = tonumber(ARGV[7])
local stamp = later(redis.call('HGET', KEYS[1], 'updated_at'), ARGV[5])
redis.call('HSET', KEYS[1], 'status', ARGV[3], 'results', ARGV[4],
           'completed_at', ARGV[5], 'updated_at', stamp, 'lease', '0')
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[6]) end
if ARGV[11] ~= '' then redis.call('HSET', KEYS[1], 'expires_at', ARGV[11]) end
if ARGV[12] ~= '' then redis.call('HSET', KEYS[1], 'states', ARGV[12]) end
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZREM', KEYS[2], ARGV[8])
redis.call('ZREM', KEYS[3], ARGV[8])
if redis.call('GET', KEYS[4]) == ARGV[8] then redis.call('EXPIRE', KEYS[4], ttl) end
redis.call('SREM', KEYS[5], ARGV[8])
for _, id in ipairs(redis.call('SMEMBERS', KEYS[5])) do
  if redis.call('EXISTS', ARGV[9] .. id) == 0 then redis.call('SREM', KEYS[5], id) end
end
if redis.call('SCARD', KEYS[5]) == 0 then
  -- No scan of the user runs: the index lives as long as the last retained one.
  local last = ttl * 1000
  for _, id in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
    local left = redis.call('PTTL', ARGV[9] .. id)
    if left == -2 then redis.call('ZREM', KEYS[6], id)
    elseif left == -1 or (last > 0 and left > last) then last = left end
  end
  if last > 0 then redis.call('PEXPIRE', KEYS[6], last) end
end
return 1
"""
)

# KEYS: scan, running, user_scans, user_active, dedup, pending.
# ARGV: scan_id, lease ttl ms, epoch, tag, index score, may recreate (1/0),
#       updated_at, field, value, ...
# Writes back a running scan's record that Redis lost, whole or in part
# (restarted without its data, or lost its last writes): the owner's fields and
# every result it holds. Counts are taken from every recorded strategy;
# `updated_at` only moves forward. A record that is gone, or older than the
# owner's claim, is recreated only when the owner may (its lease surely held).
# Returns 1 written back, 2 finished by this owner already, 0 fenced off
# (another owner holds it, or someone else finished it), -1 lost and not ours to
# recreate.
RESTORE = (
    NOW_MS
    + STANDING
    + LATER
    + """
local st = standing(KEYS[1], ARGV[3], ARGV[4])
if st == 'done' then return 2 end
if st == 'lost' and ARGV[6] ~= '1' then return -1 end
if st ~= 'ours' and st ~= 'lost' then return 0 end
local stamp = later(redis.call('HGET', KEYS[1], 'updated_at'), ARGV[7])
redis.call('HSET', KEYS[1], unpack(ARGV, 8))
local completed, found = 0, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 's:' then
    completed = completed + 1
    found = found + #cjson.decode(all[i + 1])['opportunities']
  end
end
local deadline = now_ms() + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'completed', completed, 'found', found, 'lease', deadline,
           'updated_at', stamp)
redis.call('ZADD', KEYS[2], deadline, ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[1])
redis.call('PERSIST', KEYS[3])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('SET', KEYS[5], ARGV[1], 'NX')
return 1
"""
)

# KEYS: scan. ARGV: user. Returns the status, or false when no such scan of user.
REQUEST_CANCEL = """
local state = redis.call('HMGET', KEYS[1], 'user', 'status')
if state[1] ~= ARGV[1] then return false end
if state[2] == 'queued' or state[2] == 'scanning' then
  redis.call('HSET', KEYS[1], 'cancel', '1')
end
return state[2]
"""


# KEYS: series, fetch lock. ARGV: fetcher's token, lock ms.
# One step, so a series stored between a look and a claim is never fetched again:
# {1, series} when stored; {2} when the caller now fetches it; {0} when another does.
SERIES_OR_FETCH = """
local found = redis.call('GET', KEYS[1])
if found then return {1, found} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2} end
return {0}
"""

# KEYS: series, fetch lock. ARGV: encoded series, ttl ms, fetcher's token.
# Stores the series and ends the fetch in one step, so a waiter that sees no
# lock finds the series (or knows the fetch failed).
SHARE_SERIES = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return 1
"""

# KEYS: fetch lock. ARGV: fetcher's token, ms. The fetcher is alive: keep its claim.
EXTEND_FETCH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# KEYS: fetch lock. ARGV: fetcher's token. Ends a fetch that failed.
END_FETCH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: bucket. ARGV: cost, tokens per second, burst.
# A token bucket on Redis's clock, as `LocalThrottle` keeps one in a process:
# takes `cost` (running into debt when short; a negative cost gives tokens back)
# and returns the milliseconds to wait: until a hold (a 429's Retry-After) ends,
# plus the debt at the bucket's rate, so waiters leave one by one after a hold.
TAKE_TOKENS = (
    NOW_MS
    + """
local now = now_ms()
local cost, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]) / 1000, tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(s[1]) or burst
local at = tonumber(s[2]) or now
if now > at then
  tokens = math.min(burst, tokens + (now - at) * rate)
  at = now
end
tokens = math.min(burst, tokens - cost)
local wait = math.max(0, at - now) + math.max(0, -tokens) / rate
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', at)
redis.call('PEXPIRE', KEYS[1], math.ceil(wait + burst / rate) + 60000)
return tostring(wait)
"""
)

# KEYS: bucket. ARGV: milliseconds. Nobody sends before now + ms, and the bucket
# starts refilling from empty then (no burst the moment the hold ends).
HOLD_OFF = (
    NOW_MS
    + """
local hold_until = now_ms() + tonumber(ARGV[1])
local s = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = math.min(tonumber(s[1]) or 0, 0)
local at = math.max(tonumber(s[2]) or hold_until, hold_until)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', at)
redis.call('PEXPIRE', KEYS[1], math.max(redis.call('PTTL', KEYS[1]), tonumber(ARGV[1]) + 60000))
return 1
"""
)
