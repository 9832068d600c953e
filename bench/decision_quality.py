"""Decision quality of the rollback rules, on simulated canaries.

    python bench/decision_quality.py [--quick] [--aa 1000] [--regressions 300] [--rps 1000] [--hours 24]

Error rate: the sequential test (monitoring.sequential) as the evaluator runs it: an evaluation
every 60 s (the memory updated, a restart) and, with `--look-s 10`, a check every 10 s between
them (a rollback watch, which the product does not run yet). The test runs vectorised over
canaries (a numpy copy of `sequential.step`, checked against the module at the start of every
run). A/A canaries (identical to production) go through
the full standard schedule (1, 5, 10, 25, 50 %, `--hours` per stage), the canary as a whole and
each of `--segments` equal segments: any rollback is a false one. Regressions at 1.0, 1.5, 2 and
4 × the threshold distance start at a uniform moment of each stage (a healthy stretch of 0 to
`--hours` before it, and a uniform moment of the cadence) and are watched for `--horizon-min`:
onset-to-decision median and p95 per multiple and stage, within 10 minutes, within one cadence.
Segment-only regressions: one segment of four at +2 pp, per stage.

Latency and quality: the fixed-level rule (monitoring.statistics) on the 5-minute window every
minute, A/A over the schedule and regressions as before (detection within two windows).

Traffic is Poisson(rps × share) per interval; production error rate 1 %; latency lognormal
(median 120 ms), quality normal (0.82 ± 0.08) in the simulator's buckets. Prints the figures; not
a test.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "canaryhub.settings")
os.environ.setdefault("CANARYHUB_VAR_DIR", tempfile.mkdtemp(prefix="canaryhub-bench-"))

import django  # noqa: E402

django.setup()

from monitoring import sequential as sq  # noqa: E402
from monitoring import statistics as st  # noqa: E402
from monitoring.evaluator import rollback_triggers  # noqa: E402
from monitoring.samples import Sample  # noqa: E402
from monitoring.simulator import (  # noqa: E402,E501
    LATENCY_BOUNDS,
    QUALITY_BOUNDS,
    Behaviour,
    _lognormal_bucket_probs,
    _normal_bucket_probs,
)
from monitoring.thresholds import DEFAULT_THRESHOLDS  # noqa: E402

STAGES = (1, 5, 10, 25, 50)
MULTIPLES = (1.0, 1.5, 2.0, 4.0)
WINDOW = 5
ROLLBACK = DEFAULT_THRESHOLDS["rollback"]
BASE = Behaviour(error_rate=0.01, latency_median_s=0.12, latency_sigma=0.35, quality_mean=0.82, quality_sd=0.08)
LAT = np.array(LATENCY_BOUNDS)
QMID = np.array([0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.725, 0.775, 0.825, 0.875, 0.925, 0.975, 1.0])


def behaviour(kind: str | None, multiple: float) -> Behaviour:
    b = Behaviour(**vars(BASE))
    if kind == "error":
        b.error_rate = BASE.error_rate + multiple * ROLLBACK["error_rate_pp"] / 100
    elif kind == "latency":
        b.latency_median_s = BASE.latency_median_s * (1 + multiple * (ROLLBACK["latency_p99_ratio"] - 1))
    elif kind == "quality":
        b.quality_mean = BASE.quality_mean * (1 - multiple * (1 - ROLLBACK["quality_ratio"]))
    return b


def minutes(rng: np.random.Generator, b: Behaviour, rate_per_min: float, n_min: int) -> dict[str, np.ndarray]:
    req = rng.poisson(rate_per_min, n_min)
    err = rng.binomial(req, b.error_rate)
    lat = np.stack([rng.multinomial(n, _lognormal_bucket_probs(b.latency_median_s, b.latency_sigma)) for n in req]) \
        if n_min <= 60 else _multi(rng, req, _lognormal_bucket_probs(b.latency_median_s, b.latency_sigma))
    ok = req - err
    qual = _multi(rng, ok, _normal_bucket_probs(b.quality_mean, b.quality_sd))
    return {"req": req, "err": err, "lat": lat, "qual": qual}


def _multi(rng: np.random.Generator, n: np.ndarray, p: list[float]) -> np.ndarray:
    p = np.array(p) / sum(p)
    return rng.multinomial(n, p)


def so_far(m: dict[str, np.ndarray], prefix: tuple[float, float] = (0.0, 0.0)) -> dict[str, np.ndarray]:
    """Stage-so-far requests and errors at each tick (aligned with `windows`), after `prefix`
    (requests, errors) of the stage before the simulated minutes."""
    return {"req": prefix[0] + np.cumsum(m["req"])[WINDOW - 1:], "err": prefix[1] + np.cumsum(m["err"])[WINDOW - 1:]}


def windows(m: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rolling 5-minute sums, one row per tick (ticks from minute WINDOW on)."""
    out = {}
    for k, v in m.items():
        c = np.cumsum(v, axis=0)
        pad = np.concatenate([np.zeros((1, *v.shape[1:])), c])
        out[k] = pad[WINDOW:] - pad[:-WINDOW]
    return out


def p99(lat: np.ndarray) -> np.ndarray:
    cum = np.cumsum(lat, axis=-1)
    total = cum[..., -1:]
    idx = np.argmax(cum >= 0.99 * total, axis=-1)
    return LAT[np.minimum(idx, len(LAT) - 2)]  # upper bound of the bucket: a conservative magnitude pre-check


def sample(w: dict[str, np.ndarray], i: int) -> Sample:
    lat_cum = np.cumsum(w["lat"][i])
    q = w["qual"][i]
    q_cum = np.cumsum(q)
    return Sample(requests=float(w["req"][i]), errors=float(w["err"][i]),
                  latency_buckets=list(zip(LATENCY_BOUNDS, lat_cum.tolist(), strict=True)),
                  quality_sum=float((q * QMID).sum()), quality_count=float(q.sum()),
                  quality_buckets=list(zip(QUALITY_BOUNDS, q_cum.tolist(), strict=True)), present=True)


def fires(wc: dict[str, np.ndarray], wp: dict[str, np.ndarray], sc: dict[str, np.ndarray],
          sp: dict[str, np.ndarray], *, alpha: float = st.ROLLBACK_ALPHA) -> np.ndarray:
    """Per tick, the latency and quality metrics whose rollback trigger fires ("" where none does;
    the error rate is the sequential test's, simulated apart at the watch interval). A cheap,
    looser magnitude pre-check picks candidates; the real rule
    (monitoring.evaluator.rollback_triggers) decides each candidate."""
    with np.errstate(divide="ignore", invalid="ignore"):
        qc = (wc["qual"] * QMID).sum(-1) / np.maximum(wc["qual"].sum(-1), 1)
        qp = (wp["qual"] * QMID).sum(-1) / np.maximum(wp["qual"].sum(-1), 1)
    lat_ratio = p99(wc["lat"]) / p99(wp["lat"])
    candidates = np.where((lat_ratio > 1.2) | (qc < qp * (ROLLBACK["quality_ratio"] + 0.02)))[0]
    out = np.full(len(qc), "", dtype=object)
    for i in candidates:
        earlier = {"canary": sample(wc, i - WINDOW), "production": sample(wp, i - WINDOW)} if i >= WINDOW else None
        stage = {"canary": Sample(requests=float(sc["req"][i]), errors=float(sc["err"][i])),
                 "production": Sample(requests=float(sp["req"][i]), errors=float(sp["err"][i]))}
        fired, _, _ = rollback_triggers({"canary": sample(wc, i), "production": sample(wp, i)}, ROLLBACK, earlier,
                                        stage, alpha=alpha)
        out[i] = ",".join(t.metric for t in fired if t.metric != "error_rate")
    return out


def run_aa(n: int, rps: float, hours: float, rng: np.random.Generator) -> tuple[Counter[str], int, set[int]]:
    """Latency and quality: false rollbacks by "metric at stage", the number of window tests, and
    which canaries rolled back."""
    false_rollbacks: Counter[str] = Counter()
    which: set[int] = set()
    ticks = 0
    per_stage = int(hours * 60)
    for run in range(n):
        for percent in STAGES:
            share = percent / 100
            mc = minutes(rng, BASE, rps * 60 * share, per_stage + WINDOW)
            mp = minutes(rng, BASE, rps * 60 * (1 - share), per_stage + WINDOW)
            f = fires(windows(mc), windows(mp), so_far(mc), so_far(mp))
            ticks += len(f)
            hit = np.flatnonzero(f != "")
            if len(hit):
                false_rollbacks[f"{f[hit[0]]} at {percent} %"] += 1
                which.add(run)
                break
    return false_rollbacks, ticks, which


@dataclass
class Outcome:
    percent: int
    delay_s: float | None  # onset to the decision, when within two windows of the onset
    after_breach: bool  # decided within two windows of the breach (see breach_tick)


def breach_tick(multiple: float) -> int | None:
    """Ticks after the onset tick until the window's expected value is past the threshold: a
    step regression of `multiple` × the threshold distance breaches once more than 1/multiple
    of the window is regressed (never, exactly at the threshold)."""
    if multiple <= 1.0:
        return None
    return math.floor(WINDOW / multiple)


def healthy_prefix(rng: np.random.Generator, rate_per_min: float, share: float,
                   hours: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """The stage's healthy traffic before the simulated minutes, canary and production: a
    uniform 0 to `hours` of it."""
    span = rng.uniform(0, hours * 60)
    out = []
    for fraction in (share, 1 - share):
        req = int(rng.poisson(rate_per_min * fraction * span))
        out.append((float(req), float(rng.binomial(req, BASE.error_rate))))
    return out[0], out[1]


def run_regressions(n: int, rps: float, hours: float,
                    rng: np.random.Generator) -> dict[tuple[str, float], list[Outcome]]:
    results: dict[tuple[str, float], list[Outcome]] = {}
    for kind in ("latency", "quality"):
        for multiple in MULTIPLES:
            outcomes: list[Outcome] = []
            for _ in range(n):
                percent = int(STAGES[rng.integers(len(STAGES))])
                share = percent / 100
                before, after = 10, 3 * WINDOW + 1  # minutes of healthy traffic, then of the regression
                mc = minutes(rng, BASE, rps * 60 * share, before)
                mr = minutes(rng, behaviour(kind, multiple), rps * 60 * share, after)
                c = windows({k: np.concatenate([mc[k], mr[k]]) for k in mc})
                mp = minutes(rng, BASE, rps * 60 * (1 - share), before + after)
                # The onset is at a random moment of the stage: a random healthy stretch precedes it.
                prefix_c, prefix_p = healthy_prefix(rng, rps * 60, share, hours)
                sc = so_far({k: np.concatenate([mc[k], mr[k]]) for k in ("req", "err")}, prefix_c)
                sp = so_far(mp, prefix_p)
                f = fires(c, windows(mp), sc, sp) != ""
                onset_tick = before - WINDOW + 1  # the first tick whose window holds regressed traffic
                hit = np.flatnonzero(f[onset_tick:])
                first = int(hit[0]) if len(hit) else None
                # The regression starts at a uniform moment within the minute before the onset tick.
                delay = float(first * 60 + rng.uniform(0, 60)) if first is not None and first < 2 * WINDOW else None
                b = breach_tick(multiple)
                after_breach = first is not None and b is not None and first < b + 2 * WINDOW
                outcomes.append(Outcome(percent, delay, after_breach))
            results[(kind, multiple)] = outcomes
    return results


# --- the error-rate test, simulated at the watch interval ------------------------------------------
#
# A vectorised copy of monitoring.sequential.step (runs side by side in numpy arrays), checked
# against the module on every run of the bench (`_check_vectorised`). Looks every LOOK_S seconds
# (the rollback watch: a check, no restart); every CADENCE_S an evaluation updates the memory and
# restarts (as monitoring.evaluator does).

LOOK_S = 60  # --look-s: 60, the evaluations alone; 10, with a rollback watch between them
CADENCE_S = 60
MARGIN = ROLLBACK["error_rate_pp"] / 100
K = len(sq.EXCESS)


def _ucb(x: np.ndarray, n: np.ndarray, alpha: float) -> np.ndarray:
    """sequential.rate_upper_bound, vectorised (same bisection)."""
    from scipy.special import gammaln

    out = np.ones_like(n, dtype=float)
    ok = n > 0
    x, n = np.minimum(np.maximum(x[ok], 0.0), n[ok]), n[ok]
    level = math.log(1 / alpha) - (gammaln(x + 1) + gammaln(n - x + 1) - gammaln(n + 2))
    lo, hi = np.maximum(x / n, 1e-300), np.ones_like(n, dtype=float)
    for _ in range(48):
        mid = (lo + hi) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            below = -(x * np.log(mid) + (n - x) * np.log1p(-mid)) < level
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    out[ok] = hi
    return out


def _lr(dx: np.ndarray, dn: np.ndarray, m: np.ndarray) -> np.ndarray:
    """batch_log_lr for every alternative: shape (runs, K)."""
    p1 = np.minimum(m[:, None] + np.array(sq.EXCESS)[None, :] * MARGIN, (1 + m[:, None]) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        v = dx[:, None] * np.log(p1 / m[:, None]) + (dn - dx)[:, None] * (np.log1p(-p1) - np.log1p(-m[:, None]))
    return np.where((m[:, None] >= 1.0) | (dn[:, None] <= 0), 0.0, v)


class SeqSim:
    """The memory of R tests side by side; `evaluate` is an evaluator's look (update, restart),
    `check` a watch's look (evidence now, nothing kept)."""

    def __init__(self, runs: int, alpha_stage: float):
        self.alpha_p, alpha_c = sq.levels(alpha_stage)
        self.threshold = math.log(K / alpha_c)
        self.n = np.zeros(runs)
        self.x = np.zeros(runs)
        self.m = np.ones(runs)
        self.s = np.zeros((runs, K))
        self.b = np.full((runs, K), sq.start_cost(1))
        self.starts = np.ones(runs)
        self.fresh = np.ones(runs, dtype=bool)

    def _null(self, x_p: np.ndarray, n_p: np.ndarray) -> np.ndarray:
        return np.minimum(1.0, _ucb(x_p, n_p, self.alpha_p) + sq.NULL_FRACTION * MARGIN)

    def check(self, n: np.ndarray, x: np.ndarray, m_now: np.ndarray | None = None) -> np.ndarray:
        m = np.where(self.fresh, m_now if m_now is not None else self.m, self.m)
        s = self.s + _lr(x - self.x, n - self.n, m)
        return ((s - self.b).max(axis=1) >= self.threshold) & (x >= sq.MIN_EVENTS)

    def evaluate(self, n: np.ndarray, x: np.ndarray, n_p: np.ndarray, x_p: np.ndarray) -> np.ndarray:
        m_now = self._null(x_p, n_p)
        m = np.where(self.fresh, m_now, self.m)
        self.s = self.s + _lr(x - self.x, n - self.n, m)
        reject = ((self.s - self.b).max(axis=1) >= self.threshold) & (x >= sq.MIN_EVENTS)
        self.starts += 1
        self.b = np.minimum(self.b, self.s + (math.log(sq._ZETA) + sq.START_EXPONENT * np.log(self.starts))[:, None])
        self.n, self.x, self.m, self.fresh = n.astype(float), x.astype(float), m_now, np.zeros_like(self.fresh)
        return reject


def _check_vectorised(rng: np.random.Generator) -> None:
    """The vectorised copy agrees with monitoring.sequential on random paths."""
    runs, alpha = 5, sq.stage_alpha(sq.ERROR_ALPHA, 1)
    sim = SeqSim(runs, alpha)
    states: list[sq.SequentialState | None] = [None] * runs
    n = x = n_p = x_p = np.zeros(runs)
    for t in range(30):
        dn = rng.poisson(600, runs)
        n, x = n + dn, x + rng.binomial(dn, 0.01 if t < 15 else 0.03)
        dp = rng.poisson(60000, runs)
        n_p, x_p = n_p + dp, x_p + rng.binomial(dp, 0.01)
        got = sim.evaluate(n, x, n_p, x_p)
        for i in range(runs):
            states[i], r = sq.step(states[i], canary=(n[i], x[i]), production=(n_p[i], x_p[i]), margin=MARGIN,
                                   alpha_stage=alpha)
            assert r.reject == got[i] and np.allclose(sim.s[i], states[i].s) and np.allclose(sim.b[i], states[i].b)


def error_stage(rng: np.random.Generator, runs: int, share: float, rps: float, seconds: float,
                alpha: float, *, rate_c: float = BASE.error_rate, onset_s: np.ndarray | None = None,
                bad_rate: float | None = None, prefix_s: np.ndarray | None = None) -> np.ndarray:
    """R runs of one stage's error-rate test at the watch interval. Healthy traffic for `prefix_s`
    (per run; evaluations every cadence, no watch looks), then `seconds` more, regressed to
    `bad_rate` from `onset_s` (per run, seconds after the prefix) on. Returns, per run, the
    seconds from the onset (or from the end of the prefix) to the first look that rejects
    (np.inf: none)."""
    sim = SeqSim(runs, alpha)
    n = x = n_p = x_p = np.zeros(runs)
    c_rate, p_rate = rps * share * LOOK_S, rps * (1 - share) * LOOK_S
    if prefix_s is not None:  # healthy stretch before: one evaluation a cadence, vectorised over runs
        evals = (prefix_s // CADENCE_S).astype(int)
        for e in range(int(evals.max(initial=0))):
            live = e < evals
            dn = rng.poisson(c_rate * (CADENCE_S // LOOK_S), runs) * live
            n, x = n + dn, x + rng.binomial(dn, rate_c)
            dp = rng.poisson(p_rate * (CADENCE_S // LOOK_S), runs) * live
            n_p, x_p = n_p + dp, x_p + rng.binomial(dp, BASE.error_rate)
            before = (sim.s.copy(), sim.b.copy(), sim.n.copy(), sim.x.copy(), sim.m.copy(), sim.starts.copy(),
                      sim.fresh.copy())
            sim.evaluate(n, x, n_p, x_p)
            for arr, old in zip((sim.s, sim.b), before[:2], strict=True):  # runs whose prefix ended: unchanged
                arr[~live] = old[~live]
            sim.n[~live], sim.x[~live], sim.m[~live] = before[2][~live], before[3][~live], before[4][~live]
            sim.starts[~live], sim.fresh[~live] = before[5][~live], before[6][~live]
    onset = np.full(runs, np.inf) if onset_s is None else onset_s
    first = np.full(runs, np.inf)
    looks = int(seconds // LOOK_S)
    for t in range(1, looks + 1):
        start, end = (t - 1) * LOOK_S, t * LOOK_S
        bad_part = np.clip((end - np.maximum(onset, start)) / LOOK_S, 0.0, 1.0)
        dn = rng.poisson(c_rate, runs)
        bad_n = rng.binomial(dn, bad_part)
        err = rng.binomial(dn - bad_n, rate_c) + (rng.binomial(bad_n, bad_rate) if bad_rate is not None else 0)
        n, x = n + dn, x + err
        dp = rng.poisson(p_rate, runs)
        n_p, x_p = n_p + dp, x_p + rng.binomial(dp, BASE.error_rate)
        if t % (CADENCE_S // LOOK_S) == 0:
            hit = sim.evaluate(n, x, n_p, x_p)
        else:
            hit = sim.check(n, x, sim._null(x_p, n_p))
        new = hit & np.isinf(first)
        first[new] = end - np.where(np.isinf(onset), 0.0, onset)[new]
    return first


def run_error_aa(n: int, rps: float, hours: float, rng: np.random.Generator, *, segments: int = 0) -> dict:
    """Identical canaries over the full schedule, error rate only: the canary as a whole, and
    with `segments` each of `segments` equal segments too (at its share of the budget). Per
    canary, the stage of its first false rollback (if any)."""
    first_stage: dict[int, int] = {}
    for i, percent in enumerate(STAGES):
        share = percent / 100
        tests = [(rps, sq.stage_alpha(sq.ERROR_ALPHA, i))] + [
            (rps / segments, sq.stage_alpha(sq.SEGMENTS_ALPHA, i) / segments)] * segments
        for traffic, alpha in tests:
            hit = np.isfinite(error_stage(rng, n, share, traffic, hours * 3600, alpha))
            for run in np.flatnonzero(hit):
                first_stage.setdefault(int(run), percent)
    return {"runs": n, "false": len(first_stage), "by_stage": Counter(first_stage.values())}


def run_error_regressions(n: int, rps: float, hours: float, rng: np.random.Generator,
                          horizon_s: float) -> dict[tuple[float, int], np.ndarray]:
    """Onset-to-decision (s; inf: not within `horizon_s`) per (multiple, stage): `n` canaries each,
    the onset at a uniform moment of the stage (a healthy stretch of 0 to `hours` before it) and
    of the cadence."""
    out = {}
    for i, percent in enumerate(STAGES):
        for multiple in MULTIPLES:
            prefix = rng.uniform(0, hours * 3600, n) // CADENCE_S * CADENCE_S
            onset = rng.uniform(0, CADENCE_S, n)
            out[(multiple, percent)] = error_stage(
                rng, n, percent / 100, rps, horizon_s + CADENCE_S, sq.stage_alpha(sq.ERROR_ALPHA, i),
                onset_s=onset, bad_rate=BASE.error_rate + multiple * MARGIN, prefix_s=prefix)
    return out


def run_segment_regressions(n: int, k: int, rps: float, hours: float, rng: np.random.Generator) -> dict[int, float]:
    """One segment of `k` at +2 pp errors (the whole +2/k pp): caught within 10 minutes of the onset
    by the segment's test (at its share) or the whole's, per stage. The two tests are simulated on
    separate draws of the traffic (the whole's test is the weaker here)."""
    out = {}
    for i, percent in enumerate(STAGES):
        share = percent / 100
        prefix = rng.uniform(0, hours * 3600, n) // CADENCE_S * CADENCE_S
        onset = rng.uniform(0, CADENCE_S, n)
        seg = error_stage(rng, n, share, rps / k, 600 + CADENCE_S, sq.stage_alpha(sq.SEGMENTS_ALPHA, i) / k,
                          onset_s=onset, bad_rate=BASE.error_rate + 0.02, prefix_s=prefix)
        whole = error_stage(rng, n, share, rps, 600 + CADENCE_S, sq.stage_alpha(sq.ERROR_ALPHA, i),
                            onset_s=onset, bad_rate=BASE.error_rate + 0.02 / k, prefix_s=prefix)
        out[percent] = float(np.mean(np.minimum(seg, whole) <= 600))
    return out


def router_push_ms(samples: int = 50) -> float:
    from releases.routing.routers.base import Split
    from releases.routing.routers.file import FileRouter

    router = FileRouter(tempfile.mkdtemp(prefix="canaryhub-bench-router-"))
    times = []
    for g in range(1, samples + 1):
        split = Split(model="bench", production_version="1.0.0", canary_version="1.1.0", percent=0 if g % 2 else 5,
                      canary_id=1, generation=g, strategy="random", values=())
        started = time.perf_counter()
        router.apply(split)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _pct(a: np.ndarray, q: float) -> str:
    v = float(np.percentile(a, q)) if len(a) else math.inf
    return f"{v:.0f} s" if math.isfinite(v) else "> horizon"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aa", type=int, default=1000, help="identical canaries over the full schedule")
    parser.add_argument("--regressions", type=int, default=300, help="per kind, magnitude (and stage, for errors)")
    parser.add_argument("--rps", type=float, default=1000.0, help="total requests per second of the model")
    parser.add_argument("--hours", type=float, default=24.0, help="residence per stage")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--segments", type=int, default=4, help="segments per canary in the segment runs (0: none)")
    parser.add_argument("--horizon-min", type=float, default=30.0, help="how long an error regression is watched")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for a shared machine: --aa 100 --regressions 100 --hours 2")
    parser.add_argument("--null-fraction", type=float, default=None,
                        help="test against production + this x the threshold (default: the module's)")
    parser.add_argument("--lq-aa", type=int, default=None,
                        help="identical canaries for the latency and quality rule (default: --aa; it is the slow part)")
    parser.add_argument("--look-s", type=int, default=60, choices=(10, 20, 30, 60),
                        help="error-rate looks: 60 s, the evaluations alone; less, a rollback watch between them")
    args = parser.parse_args()
    global LOOK_S
    LOOK_S = args.look_s
    if args.null_fraction is not None:
        sq.NULL_FRACTION = args.null_fraction
    if args.quick:
        args.aa, args.regressions, args.hours = 100, 100, 2.0
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    _check_vectorised(rng)
    k = args.segments
    print(f"Error rate: the sequential test (monitoring.sequential, null: production + "
          f"{sq.NULL_FRACTION:g} x the threshold), a look every {LOOK_S} s, an evaluation every {CADENCE_S} s; "
          f"{args.rps:g} req/s, production 1 % errors, "
          f"schedule {STAGES} % x {args.hours:g} h")
    aa = run_error_aa(args.aa, args.rps, args.hours, rng, segments=k)
    where = ", ".join(f"{pct} % x{v}" for pct, v in sorted(aa["by_stage"].items()))
    print(f"  A/A false rollbacks over the schedule (the whole{f' and {k} segments' if k else ''}): "
          f"{aa['false']} of {aa['runs']} ({aa['false'] / aa['runs']:.2%})  [bound by construction "
          f"{sq.ERROR_ALPHA + (sq.SEGMENTS_ALPHA if k else 0):.1%}]" + (f"  ({where})" if where else ""))
    horizon = args.horizon_min * 60
    reg = run_error_regressions(args.regressions, args.rps, args.hours, rng, horizon)
    print(f"  regressions: {args.regressions} canaries per multiple and stage, onset at a uniform moment of the "
          f"stage; onset-to-decision (watched {args.horizon_min:g} min)")
    for multiple in MULTIPLES:
        row = []
        for percent in STAGES:
            d = reg[(multiple, percent)]
            row.append(f"{percent}%: {np.mean(d <= 600):.0%} p50 {_pct(d, 50)} p95 {_pct(d, 95)}")
        print(f"    x{multiple:<3g} " + " | ".join(row))
    beyond = np.concatenate([reg[(m, p)] for m in MULTIPLES if m > 1.0 for p in STAGES])
    print(f"  x1.5 and more, all stages: median {_pct(beyond, 50)} [target <= 30 s], p95 {_pct(beyond, 95)} "
          f"[target <= 120 s], within 10 min {np.mean(beyond <= 600):.2%}")
    x15 = "  ".join(f"{p} %: {np.mean(reg[(1.5, p)] <= 600):.1%}" for p in STAGES)
    print(f"  x1.5 within 10 min by stage [target >= 99 % each]: {x15}")
    x4 = "  ".join(f"{p} %: {np.mean(reg[(4.0, p)] <= CADENCE_S):.1%}" for p in STAGES)
    print(f"  x4 within one cadence ({CADENCE_S} s) by stage [target 100 %]: {x4}")
    if k:
        seg = run_segment_regressions(args.regressions, k, args.rps, args.hours, rng)
        stages = "  ".join(f"{pct} %: {rate:.1%}" for pct, rate in seg.items())
        print(f"  one segment of {k} at +2 pp errors (the whole +{2 / k:.2g} pp), within 10 min "
              f"[target >= 99 %]: {stages}")
    lq_aa = args.aa if args.lq_aa is None else args.lq_aa
    false_rb, ticks, which = run_aa(lq_aa, args.rps, args.hours, rng)
    total = sum(false_rb.values())
    print(f"Latency and quality: the fixed-level rule (10^-6 per test) on the 5-minute window every {CADENCE_S} s")
    where = ", ".join(f"{key} x{v}" for key, v in false_rb.most_common())
    print(f"  A/A false rollbacks: {total} of {lq_aa} ({total / max(lq_aa, 1):.2%}); {ticks:,} window tests"
          + (f"  ({where})" if where else ""))
    if lq_aa == args.aa:
        print(f"A/A false rollbacks of any trigger (the two simulations paired canary by canary): "
              f"{aa['false'] + len(which)} at most of {args.aa} [target <= 1 %]")
    push_ms = router_push_ms()
    res = run_regressions(args.regressions, args.rps, args.hours, rng)
    for (kind, multiple), outcomes in res.items():
        hits = [o.delay_s for o in outcomes if o.delay_s is not None]
        med = f"{statistics.median(hits):.0f} s" if hits else "-"
        print(f"  {kind:8s} x{multiple:<4g}: detected within 10 min {len(hits) / len(outcomes):7.2%}, "
              f"median onset-to-decision {med}")
    print(f"File-router push (onset-to-0 % = decision + push): median {push_ms:.1f} ms")
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
