"""The load generator's configuration: one immutable value built from the command line,
validated before anything connects, and recorded as is in the JSON report."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

SCENARIOS = ("messaging", "subscribe", "fanout")
AUTH_ALGS = ("ed25519", "x25519")
X25519_MIN_VERSION = 7  # X25519 authorization needs the server's signed session key


class UsageError(ValueError):
    """An invalid combination of options (exit code 1)."""


@dataclass(frozen=True, slots=True)
class Warmup:
    """Excluded from the results: the first ``seconds`` of traffic or the first
    ``messages`` sends (exactly one is set, or neither for no warm-up)."""

    seconds: float | None = None
    messages: int | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.seconds) or bool(self.messages)

    def to_json(self) -> dict:
        return {"seconds": self.seconds, "messages": self.messages}


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_p99_ms: float | None = None
    min_throughput: float | None = None
    max_errors: int | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LoadConfig:
    address: str
    scenario: str = "messaging"
    auth: str = "ed25519"
    max_version: int | None = None
    connections: int | None = None  # None: the scenario's default (see effective_connections)
    size: int = 1024
    pairs: int = 1
    queues: int | None = None  # messaging: None = one per pair; subscribe: required count
    concurrency: int | None = None  # None: 1 closed loop, OPEN_LOOP_CONCURRENCY open loop
    rate: float | None = None  # None: closed loop
    duration: float | None = None
    messages: int | None = None
    warmup: Warmup = field(default_factory=Warmup)
    drain_timeout: float = 10.0
    group: int = 10
    batch: int = 135
    connect_timeout: float = 30.0
    connect_parallel: int = 64
    thresholds: Thresholds = field(default_factory=Thresholds)
    json_path: str | None = None
    quiet: bool = False

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    @property
    def model(self) -> str:
        return "open" if self.open_loop else "closed"

    def effective_concurrency(self) -> int:
        if self.concurrency is not None:
            return self.concurrency
        return OPEN_LOOP_CONCURRENCY if self.open_loop else 1

    def effective_queues(self) -> int:
        if self.scenario == "messaging":
            return self.queues if self.queues is not None else self.pairs
        if self.scenario == "fanout":
            return self.group
        return self.queues if self.queues is not None else DEFAULT_SUBSCRIBE_QUEUES

    def effective_connections(self) -> int:
        """Connections per side: messaging senders and recipients each get this many
        (default one per pair); fanout members' queues are spread over this many (default
        one per member, the sender has its own); subscribe re-subscribes from this many."""
        if self.connections is not None:
            return self.connections
        if self.scenario == "messaging":
            return self.pairs
        if self.scenario == "fanout":
            return self.group
        return DEFAULT_SUBSCRIBE_CONNECTIONS

    def redacted_address(self) -> str:
        """The address without its password (the JSON report may be published)."""
        return re.sub(r"^(smp://[^:@/]+):[^@]*@", r"\1:***@", self.address)

    def to_json(self) -> dict:
        """The configuration as recorded in the report (effective values resolved)."""
        return {
            "scenario": self.scenario,
            "address": self.redacted_address(),
            "auth": self.auth,
            "max_version": self.max_version,
            "model": self.model,
            "connections": self.effective_connections(),
            "size": self.size,
            "pairs": self.pairs if self.scenario == "messaging" else None,
            "queues": self.effective_queues(),
            "group": self.group if self.scenario == "fanout" else None,
            "batch": self.batch if self.scenario == "subscribe" else None,
            "concurrency": self.effective_concurrency(),
            "rate": self.rate,
            "duration": self.duration,
            "messages": self.messages,
            "warmup": self.warmup.to_json(),
            "drain_timeout": self.drain_timeout,
            "connect_timeout": self.connect_timeout,
            "thresholds": self.thresholds.to_json(),
        }

    def validate(self) -> None:
        """Raise UsageError for a configuration that cannot run."""
        if self.scenario not in SCENARIOS:
            raise UsageError(f"unknown scenario {self.scenario!r}")
        if self.auth not in AUTH_ALGS:
            raise UsageError(f"--auth must be one of {', '.join(AUTH_ALGS)}")
        if self.max_version is not None and self.max_version < 6:
            raise UsageError("--max-version must be 6 or more")
        if self.auth == "x25519" and self.max_version is not None and self.max_version < X25519_MIN_VERSION:
            raise UsageError(f"--auth x25519 needs version {X25519_MIN_VERSION}+, but --max-version is {self.max_version}")
        _positive("--connections", self.connections)
        _positive("--pairs", self.pairs)
        _positive("--queues", self.queues)
        _positive("--concurrency", self.concurrency)
        _positive("--group", self.group)
        _positive("--batch", self.batch)
        _positive("--messages", self.messages)
        _positive("--connect-parallel", self.connect_parallel)
        if self.rate is not None and not self.rate > 0:
            raise UsageError("--rate must be positive")
        if self.duration is not None and not self.duration > 0:
            raise UsageError("--duration must be positive")
        if self.drain_timeout <= 0 or self.connect_timeout <= 0:
            raise UsageError("timeouts must be positive")
        if self.scenario == "subscribe":
            if self.rate is not None or self.messages is not None or self.duration is not None:
                raise UsageError("subscribe takes no --rate, --messages or --duration")
            if self.warmup.enabled:
                raise UsageError("subscribe has no warm-up")
        else:
            if self.duration is not None and self.messages is not None:
                raise UsageError("give --duration or --messages, not both")
            if self.size < MIN_BODY_SIZE:
                raise UsageError(f"--size must be at least {MIN_BODY_SIZE} (the checked header)")
            if self.size > MAX_BODY_SIZE:
                raise UsageError(f"--size must be at most {MAX_BODY_SIZE}")
        if self.scenario == "messaging" and self.queues is not None and self.queues < self.pairs:
            raise UsageError("--queues must be at least --pairs (every pair needs a queue)")


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{name} must be at least 1")


# Defaults that depend on the scenario.
OPEN_LOOP_CONCURRENCY = 64  # SENDs awaiting OK per sender: enough not to throttle the rate
DEFAULT_DURATION = 10.0
DEFAULT_SUBSCRIBE_QUEUES = 1000
DEFAULT_SUBSCRIBE_CONNECTIONS = 10
MIN_BODY_SIZE = 37  # payload.HEADER_SIZE (checked by the payload tests)
MAX_BODY_SIZE = 16088  # the largest SEND body of any version (v6/v7)

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)?\s*$")
_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_COUNT = re.compile(r"^\s*([0-9]+)\s*(msgs?|messages?)\s*$")


def parse_seconds(text: str) -> float:
    """``20``, ``20s``, ``500ms``, ``2m``, ``1h`` → seconds."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (e.g. 20, 20s, 500ms, 2m)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_warmup(text: str) -> Warmup:
    """``5``/``5s``/``500ms`` (seconds) or ``1000msgs`` (messages); ``0`` for none."""
    m = _COUNT.match(text)
    if m:
        n = int(m.group(1))
        return Warmup(messages=n) if n else Warmup()
    seconds = parse_seconds(text)
    return Warmup(seconds=seconds) if seconds else Warmup()
