"""The load generator's configuration: one immutable value built from the command line,
validated before anything connects, and recorded as is in the JSON report."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace

from .stages import Schedule, Stage, format_stages

SCENARIOS = ("messaging", "subscribe", "fanout")
SUBSCRIBE_MODES = ("queues", "services")  # --mode: SUBs in batches, or one SUBS of a messaging service
SERVICES_MIN_VERSION = 19  # messaging services subscribe with SUBS from v19
AUTH_ALGS = ("ed25519", "x25519")
STAGE_TARGETS = ("rate", "concurrency")  # what --stages sets: the open loop's rate or the closed loop's concurrency
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
    stages: tuple[Stage, ...] = ()  # --stages: a moving target instead of --rate/--concurrency
    stage_target: str = "rate"
    workers: int = 1  # generator processes
    allow_errors: bool = False  # failures (lost messages, lost connections) do not fail the run
    latency_spectrum: bool = False  # print the full percentile spectrum
    hgrm_path: str | None = None
    json_path: str | None = None
    quiet: bool = False
    socks5: str | None = None  # --socks5: connect through this SOCKS5 proxy (e.g. Tor)
    proxy: str | None = None  # --proxied: the SMP proxy senders route messages through
    mode: str = "queues"  # subscribe: "queues" (SUBs in batches) or "services" (one SUBS, v19)

    @property
    def open_loop(self) -> bool:
        return self.rate is not None or (bool(self.stages) and self.stage_target == "rate")

    @property
    def schedule(self) -> Schedule | None:
        return Schedule(self.stages) if self.stages else None

    @property
    def model(self) -> str:
        return "open" if self.open_loop else "closed"

    def effective_concurrency(self) -> int:
        """Sends in flight per sender (closed loop) or SENDs awaiting OK (open loop); with
        concurrency stages, the most any stage asks of one sender."""
        if self.stages and self.stage_target == "concurrency":
            senders = self.senders()
            return max(1, math.ceil(max(s.target for s in self.stages) / senders))
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
        if self.mode == "services":
            return 1
        if self.connections is not None:
            return self.connections
        if self.scenario == "messaging":
            return self.pairs
        if self.scenario == "fanout":
            return self.group
        return DEFAULT_SUBSCRIBE_CONNECTIONS

    def senders(self) -> int:
        """Streams that send: one per pair (messaging), one (fanout)."""
        return self.pairs if self.scenario == "messaging" else 1

    def planned_seconds(self) -> float | None:
        """How long sending is planned to last after the warm-up (None: a message count)."""
        if self.stages:
            return sum(s.seconds for s in self.stages)
        return self.duration

    def share(self, index: int, workers: int) -> "LoadConfig":
        """Worker ``index``'s part of the run when ``workers`` generator processes share
        it: pairs, queues, connections, messages and rates are split (the first workers
        get one more of a remainder); fanout keeps its group per worker (each worker is
        one sender to its own group of G); per-sender concurrency is unchanged."""
        def part(n: int | None) -> int | None:
            return None if n is None else spread(n, workers)[index]

        def frac(x: float | None) -> float | None:
            return None if x is None else x / workers

        changes: dict = {
            "workers": 1,
            "rate": frac(self.rate),
            "messages": part(self.messages),
            "warmup": Warmup(self.warmup.seconds, part(self.warmup.messages)),
            "stages": tuple(Stage(s.seconds, s.target / workers) for s in self.stages),
            "json_path": None,
            "hgrm_path": None,
            "quiet": True,
            "latency_spectrum": False,
        }
        if self.scenario == "messaging":
            changes["pairs"] = part(self.pairs)
            changes["queues"] = part(self.queues)
            changes["connections"] = part(self.connections)
        elif self.scenario == "subscribe":
            changes["queues"] = part(self.effective_queues())
            changes["connections"] = part(self.effective_connections())
        return replace(self, **changes)

    def to_wire(self) -> dict:
        """Everything, to rebuild the configuration in a worker process (from_wire)."""
        d = asdict(self)
        d["stages"] = [s.to_json() for s in self.stages]
        return d

    @classmethod
    def from_wire(cls, d: dict) -> "LoadConfig":
        d = dict(d)
        d["warmup"] = Warmup(**d["warmup"])
        d["thresholds"] = Thresholds(**d["thresholds"])
        d["stages"] = tuple(Stage(**s) for s in d["stages"])
        return cls(**d)

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
            "mode": self.mode if self.scenario == "subscribe" else None,
            "concurrency": self.effective_concurrency(),
            "rate": self.rate,
            "duration": self.duration,
            "messages": self.messages,
            "warmup": self.warmup.to_json(),
            "drain_timeout": self.drain_timeout,
            "connect_timeout": self.connect_timeout,
            "thresholds": self.thresholds.to_json(),
            "stages": format_stages(self.stages) if self.stages else None,
            "stage_target": self.stage_target if self.stages else None,
            "workers": self.workers,
            "allow_errors": self.allow_errors,
            "socks5": self.socks5,
            "proxy": None if self.proxy is None else re.sub(r"^(smp://[^:@/]+):[^@]*@", r"\1:***@", self.proxy),
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
        _positive("--workers", self.workers)
        if self.stage_target not in STAGE_TARGETS:
            raise UsageError(f"--stage-target must be one of {', '.join(STAGE_TARGETS)}")
        if self.stages:
            if self.scenario == "subscribe":
                raise UsageError("subscribe takes no --stages")
            if self.rate is not None or self.duration is not None or self.messages is not None:
                raise UsageError("--stages sets the rate or concurrency and the duration: "
                                 "give no --rate, --duration or --messages with it")
            if self.stage_target == "concurrency" and self.concurrency is not None:
                raise UsageError("--stage-target concurrency: the stages set the concurrency; give no --concurrency")
            if self.warmup.enabled:
                raise UsageError("--stages has no warm-up (the first stage ramps up)")
            if all(s.target == 0 for s in self.stages):
                raise UsageError("--stages: every target is 0, nothing would be sent")
        if self.proxy is not None:
            if self.scenario != "messaging":
                raise UsageError("--proxied routes the messaging scenario's messages (give --scenario messaging)")
            from .diagnose import check_address

            check_address(self.proxy)
        if self.socks5 is not None:
            from ..transport.socks import parse_socks_proxy

            try:
                parse_socks_proxy(self.socks5)
            except ValueError as e:
                raise UsageError(f"--socks5: {e}") from None
        if self.workers > 1:
            self._validate_workers()
        if self.rate is not None and not self.rate > 0:
            raise UsageError("--rate must be positive")
        if self.duration is not None and not self.duration > 0:
            raise UsageError("--duration must be positive")
        if self.drain_timeout <= 0 or self.connect_timeout <= 0:
            raise UsageError("timeouts must be positive")
        if self.mode not in SUBSCRIBE_MODES:
            raise UsageError(f"--mode must be one of {', '.join(SUBSCRIBE_MODES)}")
        if self.mode == "services":
            if self.scenario != "subscribe":
                raise UsageError("--mode services is a subscribe mode (--scenario subscribe)")
            if self.workers != 1:
                raise UsageError("--mode services: one service connection, so one worker (--workers 1)")
            if self.connections not in (None, 1):
                raise UsageError("--mode services subscribes from one service connection (no --connections)")
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


    def _validate_workers(self) -> None:
        W = self.workers
        need = []
        if self.scenario == "messaging":
            need.append(("--pairs", self.pairs))
            if self.connections is not None:
                need.append(("--connections", self.connections))
        if self.scenario == "subscribe":
            need += [("--queues", self.effective_queues()), ("--connections", self.effective_connections())]
        if self.messages is not None:
            need.append(("--messages", self.messages))
        if self.warmup.messages:
            need.append(("--warmup", self.warmup.messages))
        for name, n in need:
            if n < W:
                raise UsageError(f"--workers {W}: {name} is {n}, but every worker needs at least one")


def spread(count: int, buckets: int) -> list[int]:
    """``count`` items over ``buckets`` as evenly as possible (the first get one more)."""
    return [count // buckets + (i < count % buckets) for i in range(buckets)]


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
