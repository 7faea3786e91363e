"""The replay log: every published event, in order, for subscriptions that resume.

A client that reconnects sends the cursor of the last event it received (``after:``);
the hub reads what was published since from this log and catches the subscription up
before it goes live. So the log answers one question, and answers it honestly: *what
happened on this stream after this cursor?* Either it knows all of it, or it raises
:class:`Gap` and the subscriber is told to refetch. It never answers with part of it.

One stream per model group (``gqlsync.chat.message``; identity events have their own),
bounded by count (``LOG_MAX_EVENTS``) and age (``LOG_MAX_AGE``). Two backends behind one
interface, chosen by ``GQLSYNC["LOG"]``:

- :class:`MemoryLog` for the in-memory channel layer (one process: the log lives in it);
- :class:`RedisLog` for channels-redis: a Redis Stream per group, on the layer's first
  host, so every process (and host) appends to and reads the same log.

A cursor is ``"<epoch>:<ms>-<seq>"``: the stream's position (Redis' own stream ids,
ordered by the time Redis appended them; the memory log counts alike) and the epoch of
the log that issued it. A log that lost its memory (Redis restarted without persistence,
a new process with the memory log) starts a new epoch, so its old cursors are refused
instead of silently skipping what was lost. Positions of different streams of one log
compare by time, which lets the hub ask "did anything happen to *this other* stream
since?" (a permission's dependencies, the subscriber's identity).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from django.utils.module_loading import import_string

from gqlsync.conf import get_settings
from gqlsync.exceptions import ConfigurationError

_CURSOR = re.compile(r"^([0-9a-f]{8}):(\d{1,15})-(\d{1,20})$")


class Gap(Exception):
    """The log cannot tell everything that happened after a cursor: it is older than the
    log keeps, was issued by a log that has since restarted, or is not a cursor at all."""


@dataclass(frozen=True, order=True, slots=True)
class Position:
    """A place in a stream: ``(ms, seq)`` orders it; ``epoch`` names the log."""

    ms: int
    seq: int
    epoch: str = ""

    @classmethod
    def parse(cls, cursor: str) -> Position:
        """Read a cursor; :class:`Gap` if it is not one."""
        found = _CURSOR.match(cursor) if isinstance(cursor, str) else None
        if found is None:
            raise Gap(f"{cursor!r} is not a cursor")
        return cls(int(found[2]), int(found[3]), found[1])

    @property
    def id(self) -> str:
        return f"{self.ms}-{self.seq}"

    def cursor(self) -> str:
        return f"{self.epoch}:{self.ms}-{self.seq}"

    def key(self) -> tuple[int, int]:
        return self.ms, self.seq


#: one entry: its cursor and the event message it holds
Entry = tuple[str, dict[str, Any]]


class EventLog(Protocol):
    """What the broker and the hub need of a log backend."""

    #: True when calls do network I/O: the event loop calls them in a thread
    blocking: bool

    def append(self, stream: str, messages: Sequence[dict[str, Any]]) -> list[str]:
        """Append ``messages`` to ``stream``, in order; their cursors."""

    def read(self, stream: str, after: Position) -> tuple[list[Entry], Position]:
        """Every entry after ``after`` (oldest first) and the stream's head position.

        ``after.epoch`` empty: the caller compares by time only (another stream's
        cursor); otherwise it must be this log's epoch. Raises :class:`Gap` when an entry
        after ``after`` may have been trimmed, or the epoch is not this log's.
        """

    def head(self, stream: str) -> Position:
        """Where ``stream`` is now: a subscription that starts here misses nothing after."""


def _new_epoch() -> str:
    return os.urandom(4).hex()


class MemoryLog:
    """The log of one process (the in-memory channel layer reaches no other)."""

    blocking = False

    def __init__(self, max_events: int, max_age: float) -> None:
        self.max_events = max_events
        self.max_age = max_age
        self.epoch = _new_epoch()
        self._streams: dict[str, deque[tuple[tuple[int, int], dict[str, Any]]]] = {}
        #: newest position trimmed away, per stream: cursors before it are gaps
        self._floor: dict[str, tuple[int, int]] = {}
        self._last = (0, 0)
        self._lock = threading.Lock()

    def _next(self) -> tuple[int, int]:
        ms = time.time_ns() // 1_000_000
        last_ms, last_seq = self._last
        self._last = (ms, 0) if ms > last_ms else (last_ms, last_seq + 1)
        return self._last

    def append(self, stream: str, messages: Sequence[dict[str, Any]]) -> list[str]:
        cursors = []
        with self._lock:
            entries = self._streams.setdefault(stream, deque())
            for message in messages:
                position = self._next()
                entries.append((position, message))
                cursors.append(Position(*position, self.epoch).cursor())
            self._trim(stream, entries)
        return cursors

    def _trim(self, stream: str, entries: deque[tuple[tuple[int, int], dict[str, Any]]]) -> None:
        oldest = (int((time.time() - self.max_age) * 1000), 0)
        while entries and (len(entries) > self.max_events or entries[0][0] < oldest):
            self._floor[stream] = entries.popleft()[0]

    def read(self, stream: str, after: Position) -> tuple[list[Entry], Position]:
        if after.epoch and after.epoch != self.epoch:
            raise Gap("the cursor was issued by a log that has since restarted")
        with self._lock:
            entries = self._streams.get(stream, deque())
            self._trim(stream, entries)
            if after.key() < self._floor.get(stream, (0, 0)):
                raise Gap("the cursor is older than the log keeps")
            found = [(Position(*p, self.epoch).cursor(), m) for p, m in entries
                     if p > after.key()]
            head = entries[-1][0] if entries else self._floor.get(stream, (0, 0))
        return found, Position(*max(head, after.key()), self.epoch)

    def head(self, stream: str) -> Position:
        # the last position given in any stream: every later entry is after it, and so
        # are the other streams' later entries (a permission's dependencies compare so)
        with self._lock:
            return Position(*self._last, self.epoch)


# Appends and trims in one step, so that the floor (the newest entry trimmed away) is
# always known: a cursor at or after it misses nothing. Trimming by count is exact;
# by age it removes every entry older than the cutoff. The epoch is made by the first
# appender (ARGV[3]) and lives as long as the stream's data does.
_APPEND = """
local meta = KEYS[2]
local epoch = redis.call('HGET', meta, 'epoch')
if not epoch then
  epoch = ARGV[3]
  redis.call('HSET', meta, 'epoch', epoch, 'floor', '0-0')
end
local ids = {}
for i = 4, #ARGV do
  ids[#ids + 1] = redis.call('XADD', KEYS[1], '*', 'm', ARGV[i])
end
local maxlen = tonumber(ARGV[1])
local excess = redis.call('XLEN', KEYS[1]) - maxlen
if excess > 0 then
  local old = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('HSET', meta, 'floor', old[#old][1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', maxlen)
end
local now = redis.call('TIME')
local cutoff = (tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)) - tonumber(ARGV[2])
-- the oldest entry first (cheap): only when it is past the age is there anything to trim
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if cutoff > 0 and #oldest > 0 and tonumber(string.match(oldest[1][1], '^(%d+)')) < cutoff then
  local older = redis.call('XREVRANGE', KEYS[1], '(' .. cutoff .. '-0', '-', 'COUNT', 1)
  if #older > 0 then
    redis.call('HSET', meta, 'floor', older[1][1])
    redis.call('XTRIM', KEYS[1], 'MINID', cutoff .. '-0')
  end
end
return {epoch, ids}
"""


#: the largest sequence number a stream id can have
_LAST_SEQ = 2**64 - 1


def _id(raw: Any) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class RedisLog:
    """A Redis Stream per group, shared by every process on the same Redis.

    ``hosts`` entries are channels-redis' (a URL, a ``(host, port)`` pair, or a dict with
    ``address`` and redis-py options); the log uses the first, as the layer's groups do.
    Calls are synchronous (a thread-safe connection pool): the broker runs them off the
    event loop.
    """

    blocking = True

    def __init__(self, host: Any, max_events: int, max_age: float, prefix: str) -> None:
        import redis

        if isinstance(host, str):
            self.client = redis.Redis.from_url(host)
        elif isinstance(host, list | tuple):
            self.client = redis.Redis(host=host[0], port=int(host[1]))
        elif isinstance(host, dict):
            options = {k: v for k, v in host.items() if k not in ("address", "master_name",
                                                                  "sentinels")}
            if "sentinels" in host:
                raise ConfigurationError(
                    "the replay log does not follow Redis Sentinel: set GQLSYNC['LOG_REDIS']")
            self.client = (redis.Redis.from_url(host["address"], **options)
                           if "address" in host else redis.Redis(**options))
        else:
            raise ConfigurationError(f"cannot read Redis host {host!r}")
        self.max_events = max_events
        self.max_age_ms = int(max_age * 1000)
        self.prefix = prefix
        self._append = self.client.register_script(_APPEND)

    def _keys(self, stream: str) -> tuple[str, str]:
        return f"{self.prefix}:log:{stream}", f"{self.prefix}:log:{stream}:meta"

    def append(self, stream: str, messages: Sequence[dict[str, Any]]) -> list[str]:
        if not messages:
            return []
        body = [json.dumps(m, separators=(",", ":")) for m in messages]
        epoch, ids = self._append(keys=list(self._keys(stream)),
                                  args=[self.max_events, self.max_age_ms, _new_epoch(), *body])
        epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        return [Position(*_id(i), epoch).cursor() for i in ids]

    def read(self, stream: str, after: Position) -> tuple[list[Entry], Position]:
        key, meta = self._keys(stream)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hmget(meta, "epoch", "floor")
            pipe.xrange(key, f"({after.id}", "+")
            (epoch, floor), entries = pipe.execute()
        epoch = epoch.decode() if isinstance(epoch, bytes) else epoch
        if after.epoch and epoch is not None and epoch != after.epoch:
            raise Gap("the cursor was issued by a log that has since restarted")
        if after.epoch and epoch is None:
            raise Gap("the log holds nothing of this cursor's (Redis lost it)")
        if floor is not None and after.key() < _id(floor):
            raise Gap("the cursor is older than the log keeps")
        epoch = epoch or after.epoch
        found = [(Position(*_id(i), epoch).cursor(), json.loads(fields[b"m"]))
                 for i, fields in entries]
        head = _id(entries[-1][0]) if entries else after.key()
        return found, Position(*head, epoch)

    def head(self, stream: str) -> Position:
        key, meta = self._keys(stream)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hget(meta, "epoch")
            pipe.xrevrange(key, "+", "-", count=1)
            pipe.time()
            epoch, last, (seconds, micros) = pipe.execute()
        if epoch is None:
            # no log yet: the first appender's epoch will differ, so a cursor from here
            # would be refused; make the epoch now (the first appender keeps it)
            self.client.hsetnx(meta, "epoch", _new_epoch())
            self.client.hsetnx(meta, "floor", "0-0")
            epoch = self.client.hget(meta, "epoch")
        epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        # Now, by Redis' clock: every later entry of any stream is after it (Redis gives
        # an entry at least the current millisecond), so the other streams compare too.
        now = (int(seconds) * 1000 + int(micros) // 1000 - 1, _LAST_SEQ)
        return Position(*max(now, _id(last[0][0]) if last else (0, 0)), epoch)


_logs: dict[tuple[Any, ...], EventLog] = {}


def get_log() -> EventLog | None:
    """The configured log (``GQLSYNC["LOG"]``), or ``None`` when it is turned off.

    ``"auto"``: a :class:`RedisLog` on the channel layer's first host when the layer is
    channels-redis, a :class:`MemoryLog` for the in-memory layer. A dotted path names a
    class taking ``(max_events, max_age)``.
    """
    conf = get_settings()
    choice = conf["LOG"]
    if not choice:
        return None
    from django.conf import settings as django_settings

    layer_conf: dict[str, Any] = django_settings.CHANNEL_LAYERS.get(conf["CHANNEL_LAYER"], {})
    key = (choice, conf["LOG_MAX_EVENTS"], conf["LOG_MAX_AGE"], repr(conf["LOG_REDIS"]),
           repr(layer_conf), conf["GROUP_PREFIX"])
    found = _logs.get(key)
    if found is not None:
        return found
    log: EventLog
    if choice == "auto":
        backend = str(layer_conf.get("BACKEND", ""))
        host = conf["LOG_REDIS"]
        if host is None and backend.startswith("channels_redis."):
            hosts = (layer_conf.get("CONFIG") or {}).get("hosts") or ["redis://localhost:6379"]
            host = hosts[0]
        if host is not None:
            prefix = (layer_conf.get("CONFIG") or {}).get("prefix", "asgi")
            log = RedisLog(host, conf["LOG_MAX_EVENTS"], conf["LOG_MAX_AGE"],
                           f"{prefix}:{conf['GROUP_PREFIX']}")
        elif backend.endswith("InMemoryChannelLayer"):
            log = MemoryLog(conf["LOG_MAX_EVENTS"], conf["LOG_MAX_AGE"])
        else:
            raise ConfigurationError(
                f"GQLSYNC['LOG'] = 'auto' knows no log for the channel layer {backend!r}: "
                "set LOG_REDIS, a backend's dotted path, or None to turn resuming off")
    else:
        log = import_string(choice)(conf["LOG_MAX_EVENTS"], conf["LOG_MAX_AGE"])
    _logs[key] = log
    return log
