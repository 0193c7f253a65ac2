"""The Lua scripts that keep one model's circuit breaker in Redis: every decision beyond a counter is one atomic script.

Keys (one ``{hash tag}``): ``KEYS[1]`` a hash (``gen`` generation, ``oat`` opened-at, ``ts``/``tf`` trial
successes/failures, ``cnt``/``fl`` the window as it was when the breaker opened, ``otot`` openings),
``KEYS[2]`` a sorted set of half-open trial permits (member: a call id, score: when the permit lapses, so
a crashed replica's permit frees itself), ``KEYS[3]`` the state counter, ``KEYS[4]`` the window's failures.

The state counter is ``state * STATE_UNIT + n``: the state's code (0 closed, 1 open, 2 half_open, as
:data:`RECORD_STATES`) times :data:`STATE_UNIT` (2**40), plus ``n``, the outcomes recorded since the
breaker last closed. A success on a closed breaker is therefore one plain ``INCR`` of that key, atomic
and script-free, whose reply carries the fleet's state (``reply // STATE_UNIT``); on any other state
the increment is harmless (every transition rewrites the counter). The window is the last
``window_size`` outcomes: a failure is stored in ``KEYS[4]`` under its ``n`` (member and score), so the
window's failures are those scored above ``n - window_size``, the same sliding window as the
in-process ring. A missing counter is a closed breaker with an empty window: nothing here ever writes
an initial state, so a starting replica joins the fleet's state and never resets it.

``ARGV[1]`` is always "now": ``""`` means Redis's own clock (``TIME``, read only when a script needs
the time), anything else the caller's injected clock (tests). Floats travel as strings (Lua numbers
returned to Redis become integers). ``RECORD`` answers with one integer (:data:`RECORD_STATES`,
:data:`RECORD_MOVED`), the cheapest reply to send and parse. Pure data: this module must not import
redis or talk to anything.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ADMIT", "RECORD", "RECORD_MOVED", "RECORD_STATES", "STATE_UNIT", "VIEW"]

#: the state counter's unit: ``counter // STATE_UNIT`` is the state's code (see the module docstring)
STATE_UNIT: Final = 1 << 40

_PRELUDE: Final = """
local UNIT = 1099511627776
local now_v = nil
local function now_s()
  if now_v then return now_v end
  if ARGV[1] ~= '' then now_v = tonumber(ARGV[1]) else
    local t = redis.call('TIME')
    now_v = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  return now_v
end
local function open(now, gen, cnt, fl)
  redis.call('HSET', KEYS[1], 'gen', gen + 1, 'oat', tostring(now), 'ts', 0, 'tf', 0, 'cnt', cnt, 'fl', fl)
  redis.call('HINCRBY', KEYS[1], 'otot', 1)
  redis.call('SET', KEYS[3], '1099511627776')
  redis.call('DEL', KEYS[2], KEYS[4])
  return gen + 1
end
local k = tonumber(redis.call('GET', KEYS[3]) or '0')
local sc = math.floor(k / UNIT)
local n = k - sc * UNIT
local st = 'closed'
if sc == 1 then st = 'open' elseif sc == 2 then st = 'half_open' end
local h = redis.call('HMGET', KEYS[1], 'gen', 'oat')
local gen = tonumber(h[1] or '0')
local oat = tonumber(h[2] or '0')
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
  redis.call('HSET', KEYS[1], 'gen', gen, 'ts', 0, 'tf', 0)
  redis.call('SET', KEYS[3], '2199023255552')
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
#: -> one integer, state + 4 * moved_from (see RECORD_STATES, RECORD_MOVED).
#: A success admitted on a closed view does not need it: ``INCR KEYS[3]`` is the same decision.
RECORD: Final = _PRELUDE + """
local outcome = tonumber(ARGV[3])
if ARGV[2] == 'cur' then
  if sc ~= 0 then return sc end
elseif tonumber(ARGV[2]) ~= gen then
  return sc
end
if sc == 0 then
  if outcome == 2 then return 0 end
  n = redis.call('INCR', KEYS[3])
  if outcome == 0 then return 0 end
  local size = tonumber(ARGV[5])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], n, '+inf')
  redis.call('ZADD', KEYS[4], n, n)
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', n - size)
  local fl = redis.call('ZCARD', KEYS[4])
  local cnt = math.min(n, size)
  if ARGV[9] == '1' and cnt >= tonumber(ARGV[6]) and fl / cnt > tonumber(ARGV[7]) then
    open(now_s(), gen, cnt, fl)
    return 1 + 4 * 1
  end
  return 0
end
if sc ~= 2 then return sc end
if redis.call('ZREM', KEYS[2], ARGV[4]) == 0 then return sc end
if outcome == 2 then return sc end
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
  local w = redis.call('HMGET', KEYS[1], 'cnt', 'fl')
  open(now_s(), gen, w[1] or 0, w[2] or 0)
  return 1 + 4 * 3
elseif verdict == 'closed' then
  redis.call('HSET', KEYS[1], 'gen', gen + 1, 'ts', 0, 'tf', 0, 'cnt', 0, 'fl', 0)
  redis.call('SET', KEYS[3], 0)
  redis.call('DEL', KEYS[2], KEYS[4])
  return 0 + 4 * 3
end
return sc
"""

#: RECORD's reply ``r``: the state is ``RECORD_STATES[r % 4]``, the state this script moved it from
#: ``RECORD_MOVED[r // 4]`` ('' when it made no transition); an ``INCR`` reply's state is
#: ``RECORD_STATES[reply // STATE_UNIT]``
RECORD_STATES: Final = ("closed", "open", "half_open")
RECORD_MOVED: Final = ("", "closed", "open", "half_open")

#: ARGV: now, timeout, window_size -> {state as read now (open past its timeout reads half_open), gen, retry_after,
#: window calls, window failures (while not closed: the window that opened it)}
VIEW: Final = _PRELUDE + """
local timeout = tonumber(ARGV[2])
local retry = '0'
if st == 'closed' then
  local size = tonumber(ARGV[3])
  return {st, gen, retry, math.min(n, size), redis.call('ZCOUNT', KEYS[4], '(' .. (n - size), n)}
end
if st == 'open' then
  local now = now_s()
  if now - oat >= timeout then st = 'half_open' else retry = tostring(oat + timeout - now) end
end
local w = redis.call('HMGET', KEYS[1], 'cnt', 'fl')
return {st, gen, retry, tonumber(w[1] or '0'), tonumber(w[2] or '0')}
"""
