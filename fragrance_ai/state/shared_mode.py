"""One service mode for the whole fleet, kept in Redis: downshift and upshift as a single replica does.

:class:`SharedModeController` is a :class:`~fragrance_ai.llm.mode_controller.ModeController` whose mode
and quiet-period start live in one Redis hash (``{prefix:mode}``: ``mode``, ``qs``), moved by one Lua
script per decision. A missing hash is the initial mode with a quiet period starting at the first
decision; nothing ever writes an initial value over an existing one, so a starting replica joins the
fleet's mode. The inherited in-process controller is the fallback while Redis does not answer; it
starts from the last fleet mode this replica saw.

What this module must not do: hold a lock across a Redis command, or read wall time.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from fragrance_ai.constants import MODES
from fragrance_ai.llm.mode_controller import ModeController
from fragrance_ai.state.link import UNAVAILABLE, RedisLink

__all__ = ["SharedModeController"]

logger = logging.getLogger(__name__)

#: ARGV: now, op (read | down | up | eval | set | until), quiet (1/0) or the mode to set, quiet period,
#: initial mode, then every mode in order -> {old, new, seconds until upshift or ''}
_SCRIPT: Final = """
local function now_s(a)
  if a ~= '' then return tonumber(a) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local modes = {}
local index = {}
for i = 6, #ARGV do modes[#modes + 1] = ARGV[i]; index[ARGV[i]] = #modes end
local h = redis.call('HMGET', KEYS[1], 'mode', 'qs')
local mode = h[1] or ARGV[5]
local op = ARGV[2]
if op == 'read' then return {mode, mode, ''} end
local now = now_s(ARGV[1])
local qs = tonumber(h[2] or tostring(now))
if h[2] == false then redis.call('HSET', KEYS[1], 'qs', tostring(now)) end
local initial = index[ARGV[5]]
local i = index[mode]
local new = mode
if op == 'down' then
  new = modes[math.min(i + 1, #modes)]
  redis.call('HSET', KEYS[1], 'mode', new, 'qs', tostring(now))
elseif op == 'set' then
  new = ARGV[3]
  redis.call('HSET', KEYS[1], 'mode', new, 'qs', tostring(now))
elseif op == 'up' or op == 'eval' then
  if op == 'eval' and ARGV[3] ~= '1' then
    redis.call('HSET', KEYS[1], 'qs', tostring(now))
  elseif i > initial and (op == 'up' or now - qs >= tonumber(ARGV[4])) then
    new = modes[i - 1]
    redis.call('HSET', KEYS[1], 'mode', new, 'qs', tostring(now))
  end
elseif op == 'until' then
  if i <= initial then return {mode, mode, ''} end
  return {mode, mode, tostring(math.max(0, qs + tonumber(ARGV[4]) - now))}
end
return {mode, new, ''}
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SharedModeController(ModeController):
    """The fleet's mode in Redis, with ModeController's rules; its own in-process mode while Redis is away.

    Counters stay per replica: a replica counts the downshifts and upshifts its own decisions made, so
    Prometheus sums them over the fleet without counting one move twice.
    """

    def __init__(self, link: RedisLink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._link = link
        self._script = link.script(_SCRIPT)
        self._key = "{" + link.key("mode") + "}"

    def _run(self, op: str, arg: str = "") -> tuple[str, str, str] | None:
        """(old, new, until) from the fleet's script, or None when Redis does not answer."""
        link = self._link
        args: list[str | float] = [link.now_arg(), op, arg, self.upshift_quiet_period, self.initial_mode, *MODES]
        reply = link.eval(self._script, [self._key], args)
        if reply is UNAVAILABLE:
            return None
        old, new, until = (_text(v) for v in reply)
        self._mode = new  # the fallback starts from the fleet's last mode
        return old, new, until

    # ------------------------------------------------------------------------------------ reading

    @property
    def mode(self) -> str:
        """The fleet's mode (this replica's own while Redis does not answer)."""
        moved = self._run("read")
        return self._mode if moved is None else moved[1]

    def get_current_mode(self) -> str:
        return self.mode

    def seconds_until_upshift(self) -> float | None:
        moved = self._run("until")
        if moved is None:
            return super().seconds_until_upshift()
        return float(moved[2]) if moved[2] else None

    # ------------------------------------------------------------------------------------ moving

    def _moved(self, moved: tuple[str, str, str], what: str) -> str:
        old, new, _ = moved
        if new != old:
            with self._lock:
                if what == "down":
                    self.downshifts_total += 1
                elif what == "up":
                    self.upshifts_total += 1
            logger.warning("fleet mode %s: %s -> %s", what, old, new)
            self._notify(old, new)
        return new

    def set_mode(self, mode: str) -> str:
        if mode not in MODES:
            return super().set_mode(mode)  # raises the usual ValueError
        moved = self._run("set", mode)
        return super().set_mode(mode) if moved is None else self._moved(moved, "set")

    def downshift(self, reason: str = "") -> str:
        with self._lock:
            self.downshift_requests_total += 1
        moved = self._run("down")
        if moved is None:
            with self._lock:
                self.downshift_requests_total -= 1  # the inherited downshift counts it
            return super().downshift(reason)
        return self._moved(moved, "down")

    def upshift(self) -> str:
        moved = self._run("up")
        return super().upshift() if moved is None else self._moved(moved, "up")

    def evaluate(self, all_breakers_closed: bool) -> str | None:
        moved = self._run("eval", "1" if all_breakers_closed else "0")
        if moved is None:
            return super().evaluate(all_breakers_closed)
        new = self._moved(moved, "up")
        return new if new != moved[0] else None

    def __repr__(self) -> str:
        return f"SharedModeController(seen={self._mode!r}, initial_mode={self.initial_mode!r}, link={self._link!r})"
