"""Traffic simulator: a production and a canary model server that publish the metric convention
(DESIGN.md) over HTTP with prometheus-client, driven by a load loop of user ids and segments.

Requests go to the canary when the user's sticky hash bucket is below the percent the router was
told (the file router's state file, so a rollback to 0 % is seen by the load as it would be by a
data plane). Faults can be injected on a version at any time: an error spike, a latency
regression, a quality drop, safety violations, output-schema failures, guardrail blocks, an
outage (requests not served), or silence (the server stops answering scrapes and serving). With
no Prometheus, a `Pusher` posts each window to the push provider's store instead, with the LLM
serving counts (tokens, cost, guardrail blocks, schema failures) beside the pattern's.

Guardrail blocks come at a small base rate, GUARDRAIL_BASE_RATE of the requests, capped so that a
version serving all the traffic sees at most GUARDRAIL_BASE_PER_MIN blocks a minute: the
guardrail rollback rule counts blocks a minute, and the demo scales its traffic with its clock
(a thousand times a real server's), where a share of requests alone would be hundreds a minute.

Requests are simulated in bulk (counts drawn per user and step, histogram buckets from the
distributions' CDFs), so a laptop can play thousands of requests per second.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from statistics import NormalDist
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import MetricsHandler

LATENCY_BOUNDS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, math.inf)
RESPONSE_TOKEN_BOUNDS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, math.inf)
QUALITY_BOUNDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, math.inf)
SEGMENTS = ("eu", "us", "apac")
GUARDRAIL_BASE_RATE = 0.002  # requests a guardrail blocks when nothing is wrong ...
GUARDRAIL_BASE_PER_MIN = 3.0  # ... at most this many a minute for a version serving all the traffic
_N = NormalDist()


class _QuietServer(ThreadingHTTPServer):
    """A scraper that hangs up mid-answer (a scrape timeout) is normal: no traceback for it."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


@dataclass
class Behaviour:
    error_rate: float = 0.002
    latency_median_s: float = 0.12
    latency_sigma: float = 0.35  # lognormal
    quality_mean: float = 0.82
    quality_sd: float = 0.08
    safety_rate: float = 0.0
    schema_failure_rate: float = 0.001  # served outputs that fail their output schema
    unavailable_rate: float = 0.0  # requests not served at all (an outage), beside the errors
    guardrail_block_rate: float = GUARDRAIL_BASE_RATE  # requests a guardrail blocked (a policy outcome)
    response_tokens_median: float = 105.0  # output tokens per response, lognormal (a mean near 120)
    response_tokens_sigma: float = 0.55
    silent: bool = False


def binomial(n: int, p: float, rng: random.Random) -> int:
    """A Binomial(n, p) draw without numpy: exact for small n, Poisson or normal otherwise."""
    if n <= 0 or p <= 0:
        return 0
    if p >= 1:
        return n
    if n <= 50:
        return sum(rng.random() < p for _ in range(n))
    mean = n * p
    if mean < 30:
        limit, k, prod = math.exp(-mean), 0, rng.random()
        while prod > limit:
            k += 1
            prod *= rng.random()
        return min(k, n)
    return max(0, min(n, round(rng.gauss(mean, math.sqrt(mean * (1 - p))))))


def multinomial(n: int, probs: list[float], rng: random.Random) -> list[int]:
    out, left, rest = [], n, 1.0
    for p in probs[:-1]:
        k = binomial(left, min(1.0, p / rest) if rest > 0 else 0.0, rng)
        out.append(k)
        left -= k
        rest -= p
    out.append(left)
    return out


@dataclass
class VersionStats:
    """One version's cumulative counters, per segment (what the server exports)."""

    requests: dict[tuple[str, str], float] = field(default_factory=dict)  # (segment, outcome)
    latency: dict[str, list[float]] = field(default_factory=dict)  # segment -> per-bucket counts
    latency_sum: dict[str, float] = field(default_factory=dict)
    quality: dict[str, list[float]] = field(default_factory=dict)
    quality_sum: dict[str, float] = field(default_factory=dict)
    safety: dict[str, float] = field(default_factory=dict)
    tokens: dict[tuple[str, str], float] = field(default_factory=dict)
    cost: dict[str, float] = field(default_factory=dict)
    schema: dict[str, float] = field(default_factory=dict)
    guardrail: dict[str, float] = field(default_factory=dict)
    response_tokens: dict[str, list[float]] = field(default_factory=dict)  # segment -> per-bucket counts
    response_tokens_sum: dict[str, float] = field(default_factory=dict)


class ModelServer:
    """A simulated model server for one version; `start()` serves /metrics on loopback."""

    def __init__(self, model: str, version: str, behaviour: Behaviour | None = None, *, seed: int = 0) -> None:
        self.model, self.version = model, version
        self.behaviour = behaviour or Behaviour()
        self.stats = VersionStats()
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.registry = CollectorRegistry()
        self.registry.register(self)  # type: ignore[arg-type]
        self._httpd: ThreadingHTTPServer | None = None
        self.port: int | None = None

    # -- serving requests ----------------------------------------------------------------------

    def serve(self, n: int, segment: str) -> None:
        if n <= 0 or self.behaviour.silent:
            return
        b, rng = self.behaviour, self.rng
        errors = binomial(n, b.error_rate, rng)
        unavailable = binomial(n - errors, b.unavailable_rate, rng)
        lat_probs = _lognormal_bucket_probs(b.latency_median_s, b.latency_sigma)
        q_probs = _normal_bucket_probs(b.quality_mean, b.quality_sd)
        lat_counts = multinomial(n, lat_probs, rng)
        ok = n - errors - unavailable
        q_counts = multinomial(ok, q_probs, rng)  # failed requests are not scored
        safety = binomial(n, b.safety_rate, rng)
        schema = binomial(ok, b.schema_failure_rate, rng)  # a failed request has no output to check
        blocked = binomial(ok, b.guardrail_block_rate, rng)  # answered with a refusal: served, not failed
        resp_counts = multinomial(ok, _lognormal_bucket_probs(b.response_tokens_median, b.response_tokens_sigma,
                                                              RESPONSE_TOKEN_BOUNDS), rng)
        with self.lock:
            s = self.stats
            s.requests[(segment, "success")] = s.requests.get((segment, "success"), 0) + ok
            s.requests[(segment, "error")] = s.requests.get((segment, "error"), 0) + errors
            s.requests[(segment, "unavailable")] = s.requests.get((segment, "unavailable"), 0) + unavailable
            lat = s.latency.setdefault(segment, [0.0] * len(LATENCY_BOUNDS))
            for i, c in enumerate(lat_counts):
                lat[i] += c
            s.latency_sum[segment] = s.latency_sum.get(segment, 0.0) + n * b.latency_median_s * math.exp(
                b.latency_sigma**2 / 2)
            q = s.quality.setdefault(segment, [0.0] * len(QUALITY_BOUNDS))
            for i, c in enumerate(q_counts):
                q[i] += c
            s.quality_sum[segment] = s.quality_sum.get(segment, 0.0) + ok * min(max(b.quality_mean, 0.0), 1.0)
            s.safety[segment] = s.safety.get(segment, 0.0) + safety
            s.tokens[(segment, "input")] = s.tokens.get((segment, "input"), 0) + n * 350
            s.tokens[(segment, "output")] = s.tokens.get((segment, "output"), 0) + n * 120
            s.cost[segment] = s.cost.get(segment, 0.0) + n * 0.0004
            s.schema[segment] = s.schema.get(segment, 0.0) + schema
            s.guardrail[segment] = s.guardrail.get(segment, 0.0) + blocked
            resp = s.response_tokens.setdefault(segment, [0.0] * len(RESPONSE_TOKEN_BOUNDS))
            for i, c in enumerate(resp_counts):
                resp[i] += c
            s.response_tokens_sum[segment] = s.response_tokens_sum.get(segment, 0.0) + ok * b.response_tokens_median \
                * math.exp(b.response_tokens_sigma**2 / 2)

    # -- prometheus-client collector -----------------------------------------------------------

    def collect(self) -> Any:
        with self.lock:
            s = self.stats
            labels = ["model", "version", "segment"]
            req = CounterMetricFamily("model_requests", "requests served", labels=[*labels, "outcome"])
            for (seg, outcome), v in sorted(s.requests.items()):
                req.add_metric([self.model, self.version, seg, outcome], v)
            yield req
            lat = HistogramMetricFamily("model_request_duration_seconds", "latency", labels=labels)
            for seg, counts in sorted(s.latency.items()):
                lat.add_metric([self.model, self.version, seg], _cumulative(LATENCY_BOUNDS, counts),
                               s.latency_sum.get(seg, 0.0))
            yield lat
            q = HistogramMetricFamily("model_quality_score", "task quality per scored request", labels=labels)
            for seg, counts in sorted(s.quality.items()):
                q.add_metric([self.model, self.version, seg], _cumulative(QUALITY_BOUNDS, counts),
                             s.quality_sum.get(seg, 0.0))
            yield q
            saf = CounterMetricFamily("model_safety_violations", "content-safety violations", labels=labels)
            for seg, v in sorted(s.safety.items()):
                saf.add_metric([self.model, self.version, seg], v)
            yield saf
            tok = CounterMetricFamily("model_tokens", "tokens", labels=[*labels, "direction"])
            for (seg, direction), v in sorted(s.tokens.items()):
                tok.add_metric([self.model, self.version, seg, direction], v)
            yield tok
            cost = CounterMetricFamily("model_cost_usd", "inference cost", labels=labels)
            for seg, v in sorted(s.cost.items()):
                cost.add_metric([self.model, self.version, seg], v)
            yield cost
            schema = CounterMetricFamily("model_output_schema_failures", "outputs that failed their output schema",
                                         labels=labels)
            for seg, v in sorted(s.schema.items()):
                schema.add_metric([self.model, self.version, seg], v)
            yield schema
            guard = CounterMetricFamily("model_guardrail_blocks", "requests a guardrail blocked", labels=labels)
            for seg, v in sorted(s.guardrail.items()):
                guard.add_metric([self.model, self.version, seg], v)
            yield guard
            resp = HistogramMetricFamily("model_response_tokens", "output tokens per response", labels=labels)
            for seg, counts in sorted(s.response_tokens.items()):
                resp.add_metric([self.model, self.version, seg], _cumulative(RESPONSE_TOKEN_BOUNDS, counts),
                                s.response_tokens_sum.get(seg, 0.0))
            yield resp

    def start(self, port: int = 0, host: str = "127.0.0.1") -> int:
        server = self

        class Handler(MetricsHandler):
            registry = self.registry

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if server.behaviour.silent:
                    # Silence: the scrape fails the way a dead process's would.
                    self.send_error(503, "silent")
                    return
                super().do_GET()

            def log_message(self, *args: Any) -> None:
                return

        self._httpd = _QuietServer((host, port), Handler)
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True, name=f"sim-{self.version}").start()
        return self.port

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def window_since(self, earlier: VersionStats | None) -> dict[str, Any]:
        """The numbers of this server since `earlier` (a snapshot), as an observation body."""
        with self.lock:
            now = _copy(self.stats)
        e = earlier or VersionStats()
        req = sum(now.requests.values()) - sum(e.requests.values())
        err = sum(v for (_, o), v in now.requests.items() if o in ("error", "unavailable")) - sum(
            v for (_, o), v in e.requests.items() if o in ("error", "unavailable"))
        down = sum(v for (_, o), v in now.requests.items() if o == "unavailable") - sum(
            v for (_, o), v in e.requests.items() if o == "unavailable")
        lat = _sum_lists(now.latency, e.latency, len(LATENCY_BOUNDS))
        qual = _sum_lists(now.quality, e.quality, len(QUALITY_BOUNDS))
        return {
            "model": self.model, "version": self.version, "requests": int(req), "errors": int(err),
            "unavailable": int(down),
            "latency_buckets": [[b if b == "+Inf" else float(b), c] for b, c in _cumulative(LATENCY_BOUNDS, lat)],
            "quality_sum": sum(now.quality_sum.values()) - sum(e.quality_sum.values()),
            "quality_count": int(sum(qual)),
            "quality_buckets": [[b if b == "+Inf" else float(b), c] for b, c in _cumulative(QUALITY_BOUNDS, qual)],
            "safety_violations": int(sum(now.safety.values()) - sum(e.safety.values())),
            "schema_failures": int(sum(now.schema.values()) - sum(e.schema.values())),
            "guardrail_blocks": int(sum(now.guardrail.values()) - sum(e.guardrail.values())),
            "tokens_in": int(sum(v for (_, d), v in now.tokens.items() if d == "input")
                             - sum(v for (_, d), v in e.tokens.items() if d == "input")),
            "tokens_out": int(sum(v for (_, d), v in now.tokens.items() if d == "output")
                              - sum(v for (_, d), v in e.tokens.items() if d == "output")),
            "cost_usd": round(sum(now.cost.values()) - sum(e.cost.values()), 6),
            "response_tokens_buckets": [[b if b == "+Inf" else float(b), c] for b, c in _cumulative(
                RESPONSE_TOKEN_BOUNDS, _sum_lists(now.response_tokens, e.response_tokens, len(RESPONSE_TOKEN_BOUNDS)))],
        }

    def snapshot(self) -> VersionStats:
        with self.lock:
            return _copy(self.stats)


# --- faults ---------------------------------------------------------------------------------------

FAULTS = ("error_spike", "latency_regression", "quality_drop", "safety_violation", "schema_failure", "guardrail",
          "outage", "silence")


def inject(server: ModelServer, fault: str, *, magnitude: float | None = None) -> None:
    b = server.behaviour
    if fault == "error_spike":
        b.error_rate = magnitude if magnitude is not None else 0.05
    elif fault == "latency_regression":
        b.latency_median_s *= magnitude if magnitude is not None else 2.0
    elif fault == "quality_drop":
        b.quality_mean *= magnitude if magnitude is not None else 0.8
    elif fault == "safety_violation":
        b.safety_rate = magnitude if magnitude is not None else 0.001
    elif fault == "schema_failure":
        b.schema_failure_rate = magnitude if magnitude is not None else 0.05
    elif fault == "guardrail":
        b.guardrail_block_rate = magnitude if magnitude is not None else 0.05
    elif fault == "outage":
        b.unavailable_rate = magnitude if magnitude is not None else 0.02
    elif fault == "silence":
        b.silent = True
    else:
        raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")


def request_fault(folder: Path, fault: str) -> Path:
    """Ask a running simulator (`manage.py simulate`, polling `folder`) to inject `fault` on its
    canary: one file per request, taken once."""
    if fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.time_ns()}.fault"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(fault)
    tmp.replace(path)  # atomic: the simulator never reads half a request
    return path


def take_requested_faults(folder: Path) -> list[str]:
    """The faults asked for since the last call, oldest first; each request file is removed, and one
    naming no known fault is dropped."""
    taken: list[str] = []
    for path in sorted(folder.glob("*.fault")) if folder.is_dir() else []:
        try:
            name = path.read_text().strip()
            path.unlink()
        except OSError:
            continue
        if name in FAULTS:
            taken.append(name)
    return taken


# --- the load loop --------------------------------------------------------------------------------


def guardrail_base_rate(rps: float) -> float:
    """The base share of requests a guardrail blocks at `rps` requests a second: GUARDRAIL_BASE_RATE,
    or less, so that a version serving them all sees at most GUARDRAIL_BASE_PER_MIN blocks a minute."""
    if rps <= 0:
        return GUARDRAIL_BASE_RATE
    return min(GUARDRAIL_BASE_RATE, GUARDRAIL_BASE_PER_MIN / (rps * 60))


def bucket_of(user_id: str) -> int:
    """The sticky 0-99 bucket of a user (stable across processes, unlike hash())."""
    return int(hashlib.sha256(user_id.encode()).hexdigest()[:8], 16) % 100


class Simulator:
    """Production and canary servers of one model, and a load loop sending `rps` requests per
    second from a pool of users across segments."""

    def __init__(self, model: str, production: str, canary: str, *, rps: float = 200.0, users: int = 5000,
                 router_dir: Path | None = None, percent: float = 0.0, seed: int = 1,
                 production_behaviour: Behaviour | None = None, canary_behaviour: Behaviour | None = None) -> None:
        self.model = model
        self.production = ModelServer(model, production, production_behaviour, seed=seed)
        self.canary = ModelServer(model, canary, canary_behaviour, seed=seed + 1)
        base = guardrail_base_rate(rps)
        for server in (self.production, self.canary):
            if server.behaviour.guardrail_block_rate == GUARDRAIL_BASE_RATE:  # the default, not one asked for
                server.behaviour.guardrail_block_rate = base
        self.rps, self.router_dir, self.percent = rps, router_dir, percent
        self.users = [f"user-{i}" for i in range(users)]
        self.user_bucket = {u: bucket_of(u) for u in self.users}
        self.user_segment = {u: SEGMENTS[i % len(SEGMENTS)] for i, u in enumerate(self.users)}
        self.rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current_percent(self) -> float:
        """The split in force: the file router's state when there is one, else `percent`."""
        if self.router_dir is not None:
            path = self.router_dir / f"{self.model}.json"
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                return 0.0
            if state.get("canary_version") != self.canary.version:
                return 0.0
            return float(state.get("percent", 0))
        return self.percent

    def step(self, seconds: float) -> None:
        """Serve `seconds` worth of requests: users sampled from the pool, each a few requests."""
        total = binomial(int(self.rps * seconds * 10), 0.1, self.rng) if self.rps * seconds < 1000 else int(
            self.rps * seconds)
        if total <= 0:
            return
        percent = self.current_percent()
        per_user = max(1, total // 200)
        sent = 0
        split: dict[tuple[bool, str], int] = {}
        while sent < total:
            user = self.users[self.rng.randrange(len(self.users))]
            n = min(per_user, total - sent)
            key = (self.user_bucket[user] < percent, self.user_segment[user])
            split[key] = split.get(key, 0) + n
            sent += n
        for (to_canary, segment), n in split.items():
            (self.canary if to_canary else self.production).serve(n, segment)

    def run(self, *, step_s: float = 0.1, on_step: Callable[[], None] | None = None) -> None:
        last = time.monotonic()
        while not self._stop.wait(step_s):
            now = time.monotonic()
            self.step(now - last)
            last = now
            if on_step:
                on_step()

    def start(self, *, serve_metrics: bool = True, step_s: float = 0.1) -> None:
        if serve_metrics:
            self.production.start()
            self.canary.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, kwargs={"step_s": step_s}, daemon=True, name="sim-load")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self.production.stop()
        self.canary.stop()

    def targets(self) -> list[str]:
        return [f"127.0.0.1:{s.port}" for s in (self.production, self.canary) if s.port]


class Pusher:
    """Feeds the push provider: every call to `push()` records the window since the last one for
    both versions (through the same service the API uses, or a callable, e.g. an HTTP post)."""

    def __init__(self, sim: Simulator, send: Callable[[dict[str, Any]], Any]) -> None:
        self.sim, self.send = sim, send
        self.last: dict[str, VersionStats | None] = {"production": None, "canary": None}
        self.window_start = datetime.now(UTC)

    def push(self, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        for role, server in (("production", self.sim.production), ("canary", self.sim.canary)):
            if server.behaviour.silent:
                continue
            body = server.window_since(self.last[role])
            self.last[role] = server.snapshot()
            body.update(window_start=self.window_start, window_end=now)
            self.send(body)
        self.window_start = now


# --- helpers --------------------------------------------------------------------------------------


def _lognormal_bucket_probs(median: float, sigma: float, bounds: tuple[float, ...] = LATENCY_BOUNDS) -> list[float]:
    cdf = [_N.cdf((math.log(b) - math.log(median)) / sigma) if not math.isinf(b) else 1.0 for b in bounds]
    return _diff(cdf)


def _normal_bucket_probs(mean: float, sd: float) -> list[float]:
    # Scores live in [0, 1]: the mass beyond 1 lands in the 1.0 bucket, below 0 in the first.
    cdf = [_N.cdf((b - mean) / sd) if b < 1.0 else 1.0 for b in QUALITY_BOUNDS]
    return _diff(cdf)


def _diff(cdf: list[float]) -> list[float]:
    out, prev = [], 0.0
    for c in cdf:
        out.append(max(0.0, c - prev))
        prev = max(prev, c)
    return out


def _cumulative(bounds: tuple[float, ...], counts: list[float]) -> list[tuple[str, float]]:
    """Prometheus-style cumulative buckets with their `le` label spelling."""
    out, total = [], 0.0
    for b, c in zip(bounds, counts, strict=True):
        total += c
        out.append(("+Inf" if math.isinf(b) else str(b), total))
    return out


def _sum_lists(now: dict[str, list[float]], earlier: dict[str, list[float]], size: int) -> list[float]:
    out = [0.0] * size
    for seg, counts in now.items():
        before = earlier.get(seg, [0.0] * size)
        for i in range(size):
            out[i] += counts[i] - before[i]
    return out


def _copy(s: VersionStats) -> VersionStats:
    return VersionStats(
        requests=dict(s.requests), latency={k: list(v) for k, v in s.latency.items()}, latency_sum=dict(s.latency_sum),
        quality={k: list(v) for k, v in s.quality.items()}, quality_sum=dict(s.quality_sum), safety=dict(s.safety),
        tokens=dict(s.tokens), cost=dict(s.cost), schema=dict(s.schema), guardrail=dict(s.guardrail),
        response_tokens={k: list(v) for k, v in s.response_tokens.items()},
        response_tokens_sum=dict(s.response_tokens_sum),
    )
