"""The Lua scripts that keep one model's circuit breaker in Redis: each call outcome is one atomic script.

Keys: ``KEYS[1]`` a hash (``st`` state, ``gen`` generation, ``oat`` opened-at, ``ts``/``tf`` trial successes/failures,
``ring``/``cnt``/``fl``/``nx`` the failure-rate window, ``otot`` openings), ``KEYS[2]`` a sorted set of
half-open trial permits (member: a call id, score: when the permit lapses, so a crashed replica's
permit frees itself). A missing hash is a closed breaker with an empty window: nothing here ever writes
an initial state, so a starting replica joins the fleet's state and never resets it.

``ARGV[1]`` is always "now": ``""`` means Redis's own clock (``TIME``, read only when a script needs
the time), anything else the caller's injected clock (tests). Floats travel as strings (Lua numbers
returned to Redis become integers). ``RECORD``, the script of every call on a closed breaker, reads the
hash once and answers with one integer (:func:`record_reply`), the cheapest reply to send and parse.
Pure data: this module must not import redis or talk to anything.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ADMIT", "RECORD", "RECORD_MOVED", "RECORD_STATES", "VIEW"]

_PRELUDE: Final = """
local now_v = nil
local function now_s()
  if now_v then return now_v end
  if ARGV[1] ~= '' then now_v = tonumber(ARGV[1]) else
    local t = redis.call('TIME')
    now_v = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return now_v
end
local function open(now, gen)
  redis.call('HSET', KEYS[1], 'st', 'open', 'gen', gen + 1, 'oat', tostring(now), 'ts', 0, 'tf', 0)
  redis.call('HINCRBY', KEYS[1], 'otot', 1)
  redis.call('DEL', KEYS[2])
  return gen + 1
end
local h = redis.call('HMGET', KEYS[1], 'st', 'gen', 'oat', 'ring', 'cnt', 'fl', 'nx')
local st = h[1] or 'closed'
local gen = tonumber(h[2] or '0')
local oat = tonumber(h[3] or '0')
"""

#: ARGV: now, timeout, half_open_requests, call id, permit lease (s) -> {admitted, state, gen, retry_after, moved_from}
ADMIT: Final = _PRELUDE + """
if st == 'closed' then return {1, st, gen, '0', ''} end
local now = now_s()
local timeout = tonumber(ARGV[2])
local moved = ''
if st == 'open' and now - oat >= timeout then
  st = 'half_open'
  gen = gen + 1
  moved = 'open'
  redis.call('HSET', KEYS[1], 'st', st, 'gen', gen, 'ts', 0, 'tf', 0)
  redis.call('DEL', KEYS[2])
end
if st == 'half_open' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[3]) then
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[5]), ARGV[4])
    return {1, st, gen, '0', moved}
  end
  return {0, st, gen, '0', moved}
elseif st == 'open' then
  return {0, st, gen, tostring(oat + timeout - now), moved}
end
return {1, st, gen, '0', moved}
"""

#: ARGV: now, token (generation at admission, or 'cur' for a call admitted on a closed view),
#: outcome (0 success, 1 failure, 2 ignored), call id,
#: window_size, minimum_calls, failure_threshold, success_threshold, enabled (1/0),
#: half_open_policy ('failure_rate' or 'consecutive': as ``breaker_policy.judge_trials``)
#: -> one integer, state + 4 * moved_from (see RECORD_STATES, RECORD_MOVED)
RECORD: Final = _PRELUDE + """
local code = {closed = 0, open = 1, half_open = 2}
local outcome = tonumber(ARGV[3])
if ARGV[2] == 'cur' then
  if st ~= 'closed' then return code[st] end
elseif tonumber(ARGV[2]) ~= gen then
  return code[st]
end
if st == 'closed' then
  if outcome == 2 then return 0 end
  local size = tonumber(ARGV[5])
  local ring = h[4] or ''
  local cnt = tonumber(h[5] or '0')
  local fl = tonumber(h[6] or '0')
  local nx = tonumber(h[7] or '0')
  if #ring ~= size then ring = string.rep('0', size); cnt = 0; fl = 0; nx = 0 end
  if cnt == size then
    if string.sub(ring, nx + 1, nx + 1) == '1' then fl = fl - 1 end
  else
    cnt = cnt + 1
  end
  local bit = '0'
  if outcome == 1 then bit = '1'; fl = fl + 1 end
  ring = string.sub(ring, 1, nx) .. bit .. string.sub(ring, nx + 2)
  nx = (nx + 1) % size
  redis.call('HSET', KEYS[1], 'ring', ring, 'cnt', cnt, 'fl', fl, 'nx', nx)
  if outcome == 1 and ARGV[9] == '1' and cnt >= tonumber(ARGV[6]) and fl / cnt > tonumber(ARGV[7]) then
    open(now_s(), gen)
    return 1 + 4 * 1
  end
  return 0
end
if st ~= 'half_open' then return code[st] end
if redis.call('ZREM', KEYS[2], ARGV[4]) == 0 then return code[st] end
if outcome == 2 then return code[st] end
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or '0')
local tf = tonumber(redis.call('HGET', KEYS[1], 'tf') or '0')
if outcome == 1 then
  tf = redis.call('HINCRBY', KEYS[1], 'tf', 1)
else
  ts = redis.call('HINCRBY', KEYS[1], 'ts', 1)
end
local verdict = ''
if ARGV[10] == 'consecutive' then
  if tf > 0 then verdict = 'open' elseif ts >= tonumber(ARGV[8]) then verdict = 'closed' end
else
  if tf / (tf + ts) > tonumber(ARGV[7]) then verdict = 'open' elseif tf + ts >= tonumber(ARGV[8]) then verdict = 'closed' end
end
if verdict == 'open' then
  open(now_s(), gen)
  return 1 + 4 * 3
elseif verdict == 'closed' then
  redis.call('HSET', KEYS[1], 'st', 'closed', 'gen', gen + 1, 'ts', 0, 'tf', 0, 'cnt', 0, 'fl', 0, 'nx', 0, 'ring', '')
  redis.call('DEL', KEYS[2])
  return 0 + 4 * 3
end
return code[st]
"""

#: RECORD's reply ``r``: the state is ``RECORD_STATES[r % 4]``, the state this script moved it from
#: ``RECORD_MOVED[r // 4]`` ('' when it made no transition)
RECORD_STATES: Final = ("closed", "open", "half_open")
RECORD_MOVED: Final = ("", "closed", "open", "half_open")

#: ARGV: now, timeout -> {state as read now (open past its timeout reads half_open), gen, retry_after, cnt, fl}
VIEW: Final = _PRELUDE + """
local timeout = tonumber(ARGV[2])
local retry = '0'
if st == 'open' then
  local now = now_s()
  if now - oat >= timeout then st = 'half_open' else retry = tostring(oat + timeout - now) end
end
return {st, gen, retry, tonumber(h[5] or '0'), tonumber(h[6] or '0')}
"""
