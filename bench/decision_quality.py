"""Decision quality of the rollback rules as the evaluator runs them, on simulated canaries.

    python bench/decision_quality.py [--quick] [--aa 300] [--regressions 100] [--hours 24] [--look-s 10]
                                     [--segment-counts 1,4] [--sequential-only]

Error rate: the COMBINED rule of monitoring.evaluator.decide, either part rolling back:
- the anytime-valid sequential test (monitoring.sequential) on the stage so far, updated and
  restarted at every evaluation (every 60 s) and, with `--look-s 10`, looked at every 10 s between
  them by the rollback watch (releases.canaries.loop.rollback_watch_tick ->
  monitoring.evaluator.watch_trigger, one count query per look: the canary as a whole and each
  segment, once the stage has an evaluation);
- the fixed-level rule (monitoring.statistics.error_rollback, as rollback_triggers applies it) at
  every evaluation on the last 5-minute window, the last two windows pooled and the stage so far.
With 4 segments, each segment is judged too (judge_segments): its own sequential test at its share
of the segments' budget, at the evaluations and at the watch's looks, and the fixed-level rule at
10^-6 / 4 on its window and stage so far. Both rules run vectorised over canaries (numpy copies
of `sequential.step` and of the fixed-level rule, checked against the product's functions at the
start of every run).
`--sequential-only` drops the fixed-level rule, for comparison.

Latency and quality: the fixed-level rule (rollback_triggers itself, after a cheap looser
magnitude pre-check) on the 5-minute window every minute, for the canary as a whole and, with
4 segments, for each segment at 10^-6 / 4.

A/A canaries (identical to production) go through the full standard schedule (1, 5, 10, 25,
50 %, `--hours` per stage): any rollback is a false one. Regressions at 1.0 (exactly at the
threshold), 1.5, 2 and 4 × the threshold distance, in every segment, start at a uniform moment of
each stage (errors: after a healthy stretch of 0 to `--hours`, and at a uniform moment of the
cadence): detection within 10 minutes of the onset and of the breach (the moment the last
5-minute window's expected value reaches the threshold: onset + 5 min / multiple), and
onset-to-decision p50 / p95 / p99, per stage. Segment-only regression: one segment of four at
+2 pp errors (the canary as a whole +0.5 pp, within limits by no more than its noise). Fairness:
the product's fairness gate (monitoring.evaluator.fairness_gate, error-rate disparity, tolerance
1 pp) on a canary whose one subgroup of four is +2 pp from the stage's start: it holds, never rolls
back ("held within N min").

Traffic is Poisson(rps × share) per interval, split evenly over the segments; production error
rate 1 %; latency lognormal (median 120 ms), quality normal (0.82 ± 0.08) in the simulator's
buckets. Progress goes to stderr. Prints the figures; not a test.
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
from pathlib import Path

import numpy as np
from scipy.special import gammaln
from scipy.stats import binom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "canaryhub.settings")
os.environ.setdefault("CANARYHUB_VAR_DIR", tempfile.mkdtemp(prefix="canaryhub-bench-"))

import django  # noqa: E402

django.setup()

from monitoring import sequential as sq  # noqa: E402
from monitoring import statistics as st  # noqa: E402
from monitoring.evaluations import GateStatus  # noqa: E402
from monitoring.evaluator import fairness_gate, rollback_triggers  # noqa: E402
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
WINDOW = 5  # minutes
ROLLBACK = DEFAULT_THRESHOLDS["rollback"]
BASE = Behaviour(error_rate=0.01, latency_median_s=0.12, latency_sigma=0.35, quality_mean=0.82, quality_sd=0.08)
LAT = np.array(LATENCY_BOUNDS)
QMID = np.array([0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.725, 0.775, 0.825, 0.875, 0.925, 0.975, 1.0])
TEN_MIN = 600.0


def progress(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def breach_s(multiple: float) -> float:
    """Seconds from the onset until the last 5-minute window's expected value reaches the threshold:
    a step regression of `multiple` × the threshold distance gets there once 1/multiple of the
    window is regressed (exactly at the threshold: once the whole window is)."""
    return WINDOW * 60 / max(multiple, 1.0)


# --- latency and quality: the fixed-level rule, one window every minute -------------------------------


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
    lat = _multi(rng, req, _lognormal_bucket_probs(b.latency_median_s, b.latency_sigma))
    qual = _multi(rng, req - err, _normal_bucket_probs(b.quality_mean, b.quality_sd))
    return {"req": req, "err": err, "lat": lat, "qual": qual}


def _multi(rng: np.random.Generator, n: np.ndarray, p: list[float]) -> np.ndarray:
    p = np.array(p) / sum(p)
    return rng.multinomial(n, p)


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


def first_fire(wc: dict[str, np.ndarray], wp: dict[str, np.ndarray], *, start: int = 0,
               alpha: float = st.ROLLBACK_ALPHA) -> tuple[int | None, str]:
    """The first tick from `start` on whose latency or quality rollback trigger fires on the window
    (None: none), and which. A cheap, looser magnitude pre-check picks candidates; the product's rule
    (monitoring.evaluator.rollback_triggers, at `alpha`) decides each, in order."""
    with np.errstate(divide="ignore", invalid="ignore"):
        qc = (wc["qual"] * QMID).sum(-1) / np.maximum(wc["qual"].sum(-1), 1)
        qp = (wp["qual"] * QMID).sum(-1) / np.maximum(wp["qual"].sum(-1), 1)
        lat_ratio = p99(wc["lat"]) / p99(wp["lat"])
    candidates = np.flatnonzero((lat_ratio > 1.2) | (qc < qp * (ROLLBACK["quality_ratio"] + 0.02)))
    for i in candidates[candidates >= start]:
        fired, _, _ = rollback_triggers({"canary": sample(wc, i), "production": sample(wp, i)}, ROLLBACK,
                                        alpha=alpha, safety=False)
        hit = [t.metric for t in fired if t.metric in ("latency_p99", "quality")]
        if hit:
            return int(i), ",".join(hit)
    return None, ""


def lq_canary(rng: np.random.Generator, rps: float, share: float, k: int, n_min: int,
              bad: Behaviour | None = None, healthy_min: int = 0) -> tuple[list[dict], list[dict]]:
    """Per-minute traffic of the canary and production, per segment (k of them, equal traffic);
    the canary regressed to `bad` after `healthy_min` minutes."""
    rate_c, rate_p = rps * 60 * share / k, rps * 60 * (1 - share) / k
    segs_c, segs_p = [], []
    for _ in range(k):
        mc = minutes(rng, BASE, rate_c, n_min if bad is None else healthy_min)
        if bad is not None:
            mr = minutes(rng, bad, rate_c, n_min - healthy_min)
            mc = {key: np.concatenate([mc[key], mr[key]]) for key in mc}
        segs_c.append(mc)
        segs_p.append(minutes(rng, BASE, rate_p, n_min))
    return segs_c, segs_p


def lq_first(segs_c: list[dict], segs_p: list[dict], start: int = 0) -> tuple[int | None, str]:
    """The first tick at which the canary as a whole, or (k ≥ 2) any segment at 10^-6 / k, rolls back
    for latency or quality."""
    k = len(segs_c)
    whole_c = {key: sum(s[key] for s in segs_c) for key in segs_c[0]}
    whole_p = {key: sum(s[key] for s in segs_p) for key in segs_p[0]}
    best, why = first_fire(windows(whole_c), windows(whole_p), start=start)
    if k >= 2:
        for j in range(k):
            t, w = first_fire(windows(segs_c[j]), windows(segs_p[j]), start=start,
                              alpha=st.segment_alpha(st.ROLLBACK_ALPHA, k))
            if t is not None and (best is None or t < best):
                best, why = t, f"segment {w}"
    return best, why


def run_lq_aa(n: int, rps: float, hours: float, k: int, rng: np.random.Generator) -> dict:
    """Identical canaries over the full schedule: per canary the stage and trigger of its first
    (false) latency or quality rollback."""
    out: Counter[str] = Counter()
    per_stage = int(hours * 60)
    for run in range(n):
        for percent in STAGES:
            t, why = lq_first(*lq_canary(rng, rps, percent / 100, k, per_stage + WINDOW))
            if t is not None:
                out[f"{why} at {percent} %"] += 1
                break
        if (run + 1) % max(1, n // 4) == 0:
            progress(f"latency/quality A/A, {k} segment(s): {run + 1} of {n}")
    return {"runs": n, "false": sum(out.values()), "where": out}


def run_lq_regressions(n: int, rps: float, k: int,
                       rng: np.random.Generator) -> dict[tuple[str, float, int], np.ndarray]:
    """Onset-to-decision (s; inf: not within the 16 minutes watched) per (kind, multiple, stage),
    `n` canaries each. The onset is at a uniform moment of the minute before the first tick whose
    window holds regressed traffic."""
    out = {}
    before, after = 10, 3 * WINDOW + 1
    onset_tick = before - WINDOW + 1  # the first tick whose window holds regressed traffic
    for kind in ("latency", "quality"):
        for multiple in MULTIPLES:
            for percent in STAGES:
                delays = np.full(n, np.inf)
                for r in range(n):
                    t, _ = lq_first(*lq_canary(rng, rps, percent / 100, k, before + after, behaviour(kind, multiple),
                                               before), start=onset_tick)
                    if t is not None:
                        delays[r] = (t - onset_tick) * 60 + rng.uniform(0, 60)
                out[(kind, multiple, percent)] = delays
            progress(f"latency/quality regressions, {k} segment(s): {kind} x{multiple:g} done")
    return out
# --- the error rate, simulated at the watch interval --------------------------------------------------
#
# Two rules, as monitoring.evaluator.decide runs them; either rolls back:
# - the sequential test (monitoring.sequential): a vectorised copy of `sequential.step` (`SeqSim`),
#   updated and restarted at every evaluation (every CADENCE_S), and, for the canary as a whole,
#   looked at every LOOK_S between them without keeping anything (the rollback watch,
#   monitoring.evaluator.watch_trigger: only once the stage has an evaluation; each segment too);
# - the fixed-level rule (monitoring.statistics.error_rollback, as
#   monitoring.evaluator.rollback_triggers applies it) at every evaluation: the last 5-minute window,
#   the last two windows pooled and the stage so far for the canary as a whole; the window and the
#   stage so far for each segment (at 10^-6 / k), a vectorised copy (`fixed_fires`).
# Both copies are checked against the product's functions at the start of every run
# (`check_vectorised`).

LOOK_S = 60  # --look-s: 60, the evaluations alone; 10, with the rollback watch between them
CADENCE_S = 60
MARGIN = ROLLBACK["error_rate_pp"] / 100
K = len(sq.EXCESS)
SEQ_ONLY = False  # --sequential-only: the sequential test alone, for comparison


def _ucb(x: np.ndarray, n: np.ndarray, alpha: float) -> np.ndarray:
    """sequential.rate_upper_bound, vectorised (same bisection)."""
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
    """The memory of R tests side by side; `evaluate` is an evaluation's look (update, restart),
    `check` the rollback watch's look (evidence now, nothing kept; nothing before the stage's
    first evaluation, as monitoring.evaluator.watch_trigger)."""

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

    def check(self, n: np.ndarray, x: np.ndarray) -> np.ndarray:
        s = self.s + _lr(x - self.x, n - self.n, self.m)
        return ((s - self.b).max(axis=1) >= self.threshold) & (x >= sq.MIN_EVENTS) & ~self.fresh

    def evaluate(self, n: np.ndarray, x: np.ndarray, n_p: np.ndarray, x_p: np.ndarray,
                 live: np.ndarray | None = None) -> np.ndarray:
        """`live`: the runs this look belongs to (the others keep their memory)."""
        m_now = self._null(x_p, n_p)
        m = np.where(self.fresh, m_now, self.m)
        s = self.s + _lr(x - self.x, n - self.n, m)
        reject = ((s - self.b).max(axis=1) >= self.threshold) & (x >= sq.MIN_EVENTS)
        starts = self.starts + 1
        b = np.minimum(self.b, s + (math.log(sq._ZETA) + sq.START_EXPONENT * np.log(starts))[:, None])
        if live is None:
            live = np.ones(len(n), dtype=bool)
        keep = ~live
        self.s = np.where(live[:, None], s, self.s)
        self.b = np.where(live[:, None], b, self.b)
        self.starts = np.where(live, starts, self.starts)
        self.n, self.x = np.where(live, n, self.n), np.where(live, x, self.x)
        self.m = np.where(live, m_now, self.m)
        self.fresh = self.fresh & keep
        return reject & live


def fixed_fires(xc: np.ndarray, nc: np.ndarray, xp: np.ndarray, np_: np.ndarray, alpha: float) -> np.ndarray:
    """monitoring.statistics.error_rollback on one span, vectorised: the canary's rate less
    production's past the threshold, at least MIN_ROLLBACK_EVENTS errors, and the conditional
    binomial test (statistics.poisson_rate_test, by scipy's binomial survival function) below
    `alpha`."""
    ok = (nc > 0) & (np_ > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = np.where(ok, xc / np.where(ok, nc, 1) - xp / np.where(ok, np_, 1), 0.0)
    cand = ok & (diff > MARGIN) & (xc >= st.MIN_ROLLBACK_EVENTS)
    out = np.zeros(np.shape(xc), dtype=bool)
    if cand.any():
        x, total = xc[cand], xc[cand] + xp[cand]
        p_worse = binom.sf(x - 1, total, nc[cand] / (nc[cand] + np_[cand]))
        out[cand] = p_worse < alpha
    return out


def _spans_fire(window: tuple, earlier: tuple | None, stage: tuple, alpha: float) -> np.ndarray:
    """The fixed-level error rule of rollback_triggers: the window, the two windows pooled (with
    `earlier`), the stage so far; each a (canary errors, canary requests, production errors,
    production requests) tuple of arrays."""
    hit = fixed_fires(*window, alpha)
    if earlier is not None:
        hit |= fixed_fires(*(a + b for a, b in zip(window, earlier, strict=True)), alpha)
    return hit | fixed_fires(*stage, alpha)


class ErrorSim:
    """R canaries' error-rate judgement during one stage: `segments` equal segments of traffic
    (the canary as a whole is their sum; with two or more, each is judged too), looked at every
    LOOK_S seconds (`look`), an evaluation every CADENCE_S."""

    def __init__(self, runs: int, stage_index: int, segments: int):
        self.k = segments
        self.whole = SeqSim(runs, sq.stage_alpha(sq.ERROR_ALPHA, stage_index))
        self.segs = [SeqSim(runs, sq.stage_alpha(sq.SEGMENTS_ALPHA, stage_index) / segments)
                     for _ in range(segments)] if segments >= 2 else []
        shape = (runs, segments)
        self.stage = [np.zeros(shape) for _ in range(4)]  # canary errors, requests; production errors, requests
        self.minute = [np.zeros(shape) for _ in range(4)]  # the current minute's counts
        self.ring = np.zeros((2 * WINDOW, 4, *shape))  # the last ten minutes' counts, oldest first
        self.fired_by: np.ndarray = np.full(runs, "", dtype=object)

    def add(self, xc: np.ndarray, nc: np.ndarray, xp: np.ndarray, np_: np.ndarray, live: np.ndarray | None = None
            ) -> None:
        for acc in (self.stage, self.minute):
            for a, d in zip(acc, (xc, nc, xp, np_), strict=True):
                a += d if live is None else d * live[:, None]

    def look(self, evaluate: bool, live: np.ndarray | None = None, fixed: bool = True) -> np.ndarray:
        """One look (an evaluation when `evaluate`, else the rollback watch's): per run, whether
        the canary rolls back for its error rate (`fixed`: the fixed-level rule judges too, unless
        --sequential-only). The rule that decided first is kept in `fired_by`."""
        fixed = fixed and not SEQ_ONLY
        xc, nc, xp, np_ = (a.sum(axis=1) for a in self.stage)
        if not evaluate:
            if LOOK_S >= CADENCE_S:
                return np.zeros(len(nc), dtype=bool)
            hit = self.whole.check(nc, xc)
            for j, sim in enumerate(self.segs):  # the watch judges each segment too
                hit = hit | sim.check(self.stage[1][:, j], self.stage[0][:, j])
            return hit
        minute = np.stack(self.minute)
        if live is None:
            self.ring = np.concatenate([self.ring[1:], minute[None]])
        else:
            rolled = np.concatenate([self.ring[1:], minute[None]])
            self.ring = np.where(live[None, None, :, None], rolled, self.ring)
        for a in self.minute:
            a[:] = 0
        hit = self.whole.evaluate(nc, xc, np_, xp, live)
        why = {"sequential": hit.copy()}
        if fixed:
            window, earlier = self.ring[WINDOW:].sum(axis=0), self.ring[:WINDOW].sum(axis=0)
            fixed_hit = _spans_fire(tuple(window.sum(axis=-1)), tuple(earlier.sum(axis=-1)), (xc, nc, xp, np_),
                                    st.ROLLBACK_ALPHA)
            why["fixed-level"] = fixed_hit
            hit = hit | fixed_hit
        if self.segs:
            seg_seq, seg_fixed = np.zeros_like(hit), np.zeros_like(hit)
            for j, sim in enumerate(self.segs):
                cj = tuple(a[:, j] for a in self.stage)
                seg_seq |= sim.evaluate(cj[1], cj[0], cj[3], cj[2], live)
                if fixed:
                    wj = tuple(window[i][:, j] for i in range(4))
                    seg_fixed |= _spans_fire(wj, None, cj, st.segment_alpha(st.ROLLBACK_ALPHA, self.k))
            why["segment (sequential)"], why["segment (fixed-level)"] = seg_seq, seg_fixed
            hit = hit | seg_seq | seg_fixed
        if live is not None:
            hit = hit & live
        new = hit & (self.fired_by == "")
        for label, mask in why.items():
            self.fired_by[new & mask & (self.fired_by == "")] = label
        return hit


def check_vectorised(rng: np.random.Generator) -> None:
    """The vectorised copies agree with the product: SeqSim with monitoring.sequential.step on random
    paths, and fixed_fires / _spans_fire with monitoring.evaluator.rollback_triggers' error-rate
    verdict (fixed-level rule alone) on random windows. Raises AssertionError when they differ."""
    runs, alpha = 5, sq.stage_alpha(sq.ERROR_ALPHA, 1)
    sim = SeqSim(runs, alpha)
    states: list[sq.SequentialState | None] = [None] * runs
    n = x = n_p = x_p = np.zeros(runs)
    for t in range(30):
        dn = rng.poisson(600, runs)
        n, x = n + dn, x + rng.binomial(dn, 0.01 if t < 15 else 0.03)
        dp = rng.poisson(60000, runs)
        n_p, x_p = n_p + dp, x_p + rng.binomial(dp, 0.01)
        if t % 3 == 1:  # a watch look between evaluations: the same evidence, nothing kept
            got = sim.check(n, x)
            for i in range(runs):
                _, r = sq.step(states[i], canary=(n[i], x[i]), production=(n_p[i], x_p[i]), margin=MARGIN,
                               alpha_stage=alpha, restart=False)
                assert bool(r.reject) == bool(got[i]), "the watch's look differs from sequential.step"
        got = sim.evaluate(n, x, n_p, x_p)
        for i in range(runs):
            states[i], r = sq.step(states[i], canary=(n[i], x[i]), production=(n_p[i], x_p[i]), margin=MARGIN,
                                   alpha_stage=alpha)
            assert r.reject == got[i] and np.allclose(sim.s[i], states[i].s) and np.allclose(sim.b[i], states[i].b), \
                "the sequential copy differs from sequential.step"
    check_fixed(rng, 400)


def check_fixed(rng: np.random.Generator, cases: int) -> tuple[int, int]:
    """`cases` random (window, earlier window, stage so far) error counts near the threshold, each
    judged by the vectorised fixed-level rule and by monitoring.evaluator.rollback_triggers (without
    the sequential test); every verdict must agree. Returns (cases, how many fired)."""
    nc = rng.integers(200, 20_000, (3, cases)).astype(float)  # window, earlier window, the rest of the stage
    npr = np.floor(nc * rng.uniform(1, 99, cases))
    rate_c = 0.01 + rng.uniform(0, 0.01, cases)
    xc, xp = rng.binomial(nc.astype(int), rate_c).astype(float), rng.binomial(npr.astype(int), 0.01).astype(float)
    for a in (nc, npr, xc, xp):
        a[2] += a[0] + a[1]  # the stage holds the two windows and more
    alpha = st.ROLLBACK_ALPHA * rng.choice([1.0, 0.25], cases)
    span = [tuple(a[i] for a in (xc, nc, xp, npr)) for i in range(3)]
    got = np.array([_spans_fire(tuple(v[j:j + 1] for v in span[0]), tuple(v[j:j + 1] for v in span[1]),
                                tuple(v[j:j + 1] for v in span[2]), alpha[j])[0] for j in range(cases)])
    for j in range(cases):
        s = [{"canary": Sample(requests=span[i][1][j], errors=span[i][0][j]),
              "production": Sample(requests=span[i][3][j], errors=span[i][2][j])} for i in range(3)]
        fired, _, _ = rollback_triggers(s[0], ROLLBACK, s[1], s[2], alpha=float(alpha[j]), safety=False)
        want = any(t.metric == "error_rate" for t in fired)
        assert want == bool(got[j]), f"the fixed-level copy differs from rollback_triggers on case {j}"
    return cases, int(got.sum())


def error_stage(rng: np.random.Generator, runs: int, share: float, rps: float, seconds: float, stage_index: int,
                segments: int, *, bad: np.ndarray | None = None, onset_s: np.ndarray | None = None,
                prefix_s: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """R runs of one stage's error-rate judgement, `segments` equal segments. Healthy traffic for
    `prefix_s` (per run; evaluations every cadence, the sequential test only, whose verdicts are not
    counted: the regression runs are conditioned on no false rollback before the onset), then
    `seconds` more, each segment's canary regressed to `bad` (runs × segments error rates) from
    `onset_s` (per run, seconds after the prefix) on. Returns per run the seconds from the onset (or
    from the end of the prefix) to the first look that rolls back (np.inf: none), and the rule that
    did ("sequential", "sequential (watch)", "fixed-level", "segment (sequential)", "segment (fixed-level)")."""
    k = segments
    sim = ErrorSim(runs, stage_index, k)
    c_rate, p_rate = rps * share / k, rps * (1 - share) / k
    base = BASE.error_rate

    def draw(rate_per_s: float, span: float, n: int = runs) -> tuple[np.ndarray, np.ndarray]:
        req = rng.poisson(rate_per_s * span, (n, k)).astype(float)
        return rng.binomial(req.astype(np.int64), base).astype(float), req

    if prefix_s is not None:
        evals = (prefix_s // CADENCE_S).astype(int)
        for e in range(int(evals.max(initial=0))):
            live = e < evals
            (xc, nc), (xp, np_) = draw(c_rate, CADENCE_S), draw(p_rate, CADENCE_S)
            sim.add(xc, nc, xp, np_, live)
            sim.look(True, live, fixed=False)
        sim.fired_by[:] = ""
    onset = np.full(runs, np.inf) if onset_s is None else onset_s
    first = np.full(runs, np.inf)
    why = np.full(runs, "", dtype=object)
    per_eval = CADENCE_S // LOOK_S
    for t in range(1, int(seconds // LOOK_S) + 1):
        start, end = (t - 1) * LOOK_S, t * LOOK_S
        nc = rng.poisson(c_rate * LOOK_S, (runs, k)).astype(np.int64)
        np_ = rng.poisson(p_rate * LOOK_S, (runs, k)).astype(np.int64)
        if bad is None:
            xc = rng.binomial(nc, base)
        else:
            bad_part = np.clip((end - np.maximum(onset, start)) / LOOK_S, 0.0, 1.0)
            bad_n = rng.binomial(nc, bad_part[:, None])
            xc = rng.binomial(nc - bad_n, base) + rng.binomial(bad_n, bad)
        sim.add(xc.astype(float), nc.astype(float), rng.binomial(np_, base).astype(float), np_.astype(float))
        evaluate = t % per_eval == 0
        hit = sim.look(evaluate)
        new = hit & np.isinf(first)
        if new.any():
            first[new] = end - np.where(np.isinf(onset), 0.0, onset)[new]
            why[new] = sim.fired_by[new] if evaluate else "sequential (watch)"
        if bad is not None and np.isfinite(first).all():
            break
    return first, why


def run_error_aa(n: int, rps: float, hours: float, k: int, rng: np.random.Generator) -> dict:
    """Identical canaries over the full schedule: per canary the stage and rule of its first false
    rollback (if any)."""
    first_stage: dict[int, int] = {}
    rules: Counter[str] = Counter()
    for i, percent in enumerate(STAGES):
        got, why = error_stage(rng, n, percent / 100, rps, hours * 3600, i, k)
        for run in np.flatnonzero(np.isfinite(got)):
            if int(run) not in first_stage:
                first_stage[int(run)] = percent
                rules[str(why[run])] += 1
        progress(f"error-rate A/A, {k} segment(s): stage {percent} % done ({len(first_stage)} false so far)")
    return {"runs": n, "false": len(first_stage), "by_stage": Counter(first_stage.values()), "rules": rules}


def run_error_regressions(n: int, rps: float, hours: float, k: int, rng: np.random.Generator,
                          horizon_s: float) -> dict:
    """Onset-to-decision (s; inf: not within `horizon_s`) per (multiple, stage), `n` canaries each,
    every segment regressed; with k ≥ 2 also "segment" (one segment at +2 pp, the others healthy).
    The onset is at a uniform moment of the stage (a healthy stretch of 0 to `hours` before it) and
    of the cadence. Also the rules that decided, per stage."""
    out: dict = {}
    cases: list[tuple[str | float, np.ndarray]] = [(m, np.full(k, BASE.error_rate + m * MARGIN)) for m in MULTIPLES]
    if k >= 2:
        cases.append(("segment", np.array([BASE.error_rate + 0.02] + [BASE.error_rate] * (k - 1))))
    for i, percent in enumerate(STAGES):
        runs = n * len(cases)
        bad = np.concatenate([np.tile(rates, (n, 1)) for _, rates in cases])
        prefix = rng.uniform(0, hours * 3600, runs) // CADENCE_S * CADENCE_S
        onset = rng.uniform(0, CADENCE_S, runs)
        got, why = error_stage(rng, runs, percent / 100, rps, horizon_s + CADENCE_S, i, k, bad=bad, onset_s=onset,
                               prefix_s=prefix)
        for c, (name, _) in enumerate(cases):
            out[(name, percent)] = got[c * n:(c + 1) * n]
            out[("rules", name, percent)] = Counter(str(w) for w in why[c * n:(c + 1) * n] if w)
        progress(f"error-rate regressions, {k} segment(s): stage {percent} % done")
    return out


def run_fairness(n: int, rps: float, rng: np.random.Generator, *, k: int = 4, growth_pp: float = 2.0,
                 tolerance_pp: float = 1.0, horizon_min: int = 60) -> dict[int, np.ndarray]:
    """Minutes from the stage's start until the product's fairness gate (error-rate disparity,
    `tolerance_pp`) turns red, for a canary whose one subgroup of `k` is `growth_pp` worse from the
    start (np.inf: not within `horizon_min`), per stage. The gate holds the stage; it never rolls
    back."""
    out = {}
    config = {"metric": "error_rate", "tolerance": tolerance_pp}
    for percent in STAGES:
        share = percent / 100
        held = np.full(n, np.inf)
        rates = np.array([BASE.error_rate + growth_pp / 100] + [BASE.error_rate] * (k - 1))
        for r in range(n):
            dnc = rng.poisson(rps * 60 * share / k, (horizon_min, k))
            dnp = rng.poisson(rps * 60 * (1 - share) / k, (horizon_min, k))
            nc, xc = np.cumsum(dnc, axis=0), np.cumsum(rng.binomial(dnc, rates), axis=0)
            npr, xp = np.cumsum(dnp, axis=0), np.cumsum(rng.binomial(dnp, BASE.error_rate), axis=0)
            for minute in range(horizon_min):
                stage = {f"s{j}": {"canary": Sample(requests=float(nc[minute, j]), errors=float(xc[minute, j])),
                                   "production": Sample(requests=float(npr[minute, j]), errors=float(xp[minute, j]))}
                         for j in range(k)}
                gate, _ = fairness_gate(stage, config)
                if gate.status == GateStatus.RED:
                    held[r] = minute + 1
                    break
        out[percent] = held
    progress("fairness done")
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


def _q(a: np.ndarray, q: float) -> str:
    v = float(np.percentile(a, q, method="higher")) if len(a) else math.inf
    return f"{v:.0f}" if math.isfinite(v) else ">hz"


def _share(a: np.ndarray, limit: float) -> str:
    return f"{np.mean(a <= limit):.1%}" if len(a) else "-"


def table(title: str, rows: list[tuple[str, list[str]]], header: list[str]) -> None:
    print(title)
    width = max(len(r[0]) for r in rows)
    cols = [max(len(h), *(len(r[1][i]) for r in rows)) for i, h in enumerate(header)]
    print("  " + " " * width + " | " + " | ".join(h.rjust(w) for h, w in zip(header, cols, strict=True)))
    for name, cells in rows:
        print("  " + name.ljust(width) + " | " + " | ".join(c.rjust(w) for c, w in zip(cells, cols, strict=True)))


def report_detection(label: str, res: dict, horizon_s: float, with_breach: bool = True) -> None:
    """The detection tables of one metric kind and segment count: within 10 minutes of the onset
    and of the breach, onset-to-decision p50 / p95 / p99, per multiple and stage."""
    hdr = [f"{p} %" for p in STAGES] + ["all"]
    rows = []
    for m in MULTIPLES:
        cells = [_share(res[(m, p)], TEN_MIN) for p in STAGES]
        rows.append((f"x{m:g}" + (" (at threshold)" if m == 1.0 else ""),
                     cells + [_share(np.concatenate([res[(m, p)] for p in STAGES]), TEN_MIN)]))
    table(f"  {label}: detected within 10 min of the ONSET", rows, hdr)
    if with_breach:
        rows = []
        for m in MULTIPLES:
            cells = [_share(res[(m, p)] - breach_s(m), TEN_MIN) for p in STAGES]
            allp = np.concatenate([res[(m, p)] - breach_s(m) for p in STAGES])
            rows.append((f"x{m:g} (breach +{breach_s(m):.0f} s)", cells + [_share(allp, TEN_MIN)]))
        table(f"  {label}: detected within 10 min of the BREACH (last window's expected value at the threshold)",
              rows, hdr)
    rows = [(f"x{m:g}", [f"{_q(res[(m, p)], 50)}/{_q(res[(m, p)], 95)}/{_q(res[(m, p)], 99)}" for p in STAGES]
             + [""]) for m in MULTIPLES]
    table(f"  {label}: onset-to-decision p50/p95/p99 in s ('>hz': not within the {horizon_s / 60:g} min watched)",
          rows, hdr)


def _met(seconds: float, target: float) -> str:
    if not math.isfinite(seconds):
        return ">hz NOT met"
    return f"{seconds:.0f} s {'met' if seconds <= target else 'NOT met'}"


def report_targets(label: str, res: dict) -> None:
    """The speed targets per stage: met or not."""
    rows = []
    for p in STAGES:
        beyond = np.concatenate([res[(m, p)] for m in MULTIPLES if m > 1.0])
        med, p95 = (float(np.percentile(beyond, q, method="higher")) for q in (50, 95))
        x15, x4 = float(np.mean(res[(1.5, p)] <= TEN_MIN)), float(np.mean(res[(4.0, p)] <= CADENCE_S))
        rows.append((f"{p} %", [_met(med, 30), _met(p95, 120), f"{x15:.1%} {'met' if x15 >= 0.99 else 'NOT met'}",
                                f"{x4:.1%} {'met' if x4 >= 1.0 else 'NOT met'}"]))
    allb = np.concatenate([res[(m, p)] for m in MULTIPLES if m > 1.0 for p in STAGES])
    rows.append(("all stages", [f"{_q(allb, 50)} s", f"{_q(allb, 95)} s", "", ""]))
    table(f"  {label}: targets (x1.5 and more: median <= 30 s, p95 <= 120 s; x1.5 >= 99 % within 10 min; "
          f"x4 within one cadence, {CADENCE_S} s)", rows, ["median x1.5+", "p95 x1.5+", "x1.5 in 10 min",
                                                         "x4 in one cadence"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aa", type=int, default=300, help="identical canaries over the full schedule (error rate)")
    parser.add_argument("--regressions", type=int, default=100, help="error-rate canaries per multiple and stage")
    parser.add_argument("--rps", type=float, default=1000.0, help="total requests per second of the model")
    parser.add_argument("--hours", type=float, default=24.0, help="residence per stage")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--segment-counts", default="1,4",
                        help="segment counts to run (comma-separated; 1: the canary as a whole only)")
    parser.add_argument("--horizon-min", type=float, default=30.0, help="how long an error regression is watched")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for a shared machine: --aa 40 --regressions 40 --hours 2 --lq-aa 4 "
                             "--lq-regressions 10 --fairness 20")
    parser.add_argument("--null-fraction", type=float, default=None,
                        help="the sequential test against production + this x the threshold (default: the module's)")
    parser.add_argument("--lq-aa", type=int, default=10,
                        help="identical canaries for the latency and quality rule (the slow part; 0: skip)")
    parser.add_argument("--lq-regressions", type=int, default=30,
                        help="latency and quality canaries per multiple and stage (0: skip)")
    parser.add_argument("--fairness", type=int, default=50, help="canaries per stage of the fairness case (0: skip)")
    parser.add_argument("--look-s", type=int, default=10, choices=(10, 20, 30, 60),
                        help="error-rate looks: 60 s, the evaluations alone; less, the rollback watch between them")
    parser.add_argument("--sequential-only", action="store_true",
                        help="the error rate by the sequential test alone (without the fixed-level rule), "
                             "for comparison")
    args = parser.parse_args()
    global LOOK_S, SEQ_ONLY
    LOOK_S, SEQ_ONLY = args.look_s, args.sequential_only
    if args.null_fraction is not None:
        sq.NULL_FRACTION = args.null_fraction
    if args.quick:
        args.aa, args.regressions, args.hours = 40, 40, 2.0
        args.lq_aa, args.lq_regressions, args.fairness = 4, 10, 20
    counts = [int(c) for c in args.segment_counts.split(",") if c.strip()]
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    check_vectorised(rng)
    horizon = args.horizon_min * 60
    rule = ("the sequential test ALONE (--sequential-only)" if SEQ_ONLY else
            "the combined rule: the sequential test OR the fixed-level rule (window, two windows, stage so far)")
    print(f"Decision quality at {args.rps:g} req/s, production 1 % errors, schedule {STAGES} % x {args.hours:g} h, "
          f"seed {args.seed}")
    print(f"Error rate: {rule}; an evaluation every {CADENCE_S} s, "
          + (f"the rollback watch every {LOOK_S} s between them" if LOOK_S < CADENCE_S else "no watch between them")
          + f"; the sequential test's null: production + {sq.NULL_FRACTION:g} x the threshold")
    print("  vectorised copies checked against monitoring.sequential.step and rollback_triggers: agree")
    aa_rows, lq_rows = [], []
    for k in counts:
        scope = " (the canary as a whole only)" if k == 1 else " (the whole and each segment)"
        print(f"\n=== {k} segment(s){scope} ===")
        aa = run_error_aa(args.aa, args.rps, args.hours, k, rng)
        bound = sq.ERROR_ALPHA + (sq.SEGMENTS_ALPHA if k >= 2 else 0)
        where = ", ".join(f"{pct} %: {v}" for pct, v in sorted(aa["by_stage"].items())) or "-"
        rules = ", ".join(f"{r}: {v}" for r, v in aa["rules"].most_common()) or "-"
        aa_rows.append((f"error rate, {k} seg", [f"{aa['false']} of {aa['runs']}", f"{aa['false'] / aa['runs']:.2%}",
                                                 f"{bound:.1%} (sequential part)", where, rules]))
        reg = run_error_regressions(args.regressions, args.rps, args.hours, k, rng, horizon)
        report_detection(f"ERROR RATE, {k} segment(s), {args.regressions} canaries per cell", reg, horizon)
        report_targets(f"ERROR RATE, {k} segment(s)", reg)
        rows = []
        for m in MULTIPLES:
            tally = Counter()
            for p in STAGES:
                tally.update(reg[("rules", m, p)])
            total = sum(tally.values())
            rows.append((f"x{m:g}", [", ".join(f"{r} {v / total:.0%}" for r, v in tally.most_common()) or "-"]))
        table(f"  ERROR RATE, {k} segment(s): the rule that decided first (decided canaries, all stages)", rows,
              ["rule"])
        if k >= 2:
            seg = [reg[("segment", p)] for p in STAGES]
            table(f"  ERROR RATE: one segment of {k} at +2 pp (the whole +{2 / k:.2g} pp), target >= 99 % within "
                  f"10 min", [("within 10 min", [_share(s, TEN_MIN) for s in seg]),
                               ("p50/p95 s", [f"{_q(s, 50)}/{_q(s, 95)}" for s in seg])],
                  [f"{p} %" for p in STAGES])
        if args.lq_aa:
            lq = run_lq_aa(args.lq_aa, args.rps, args.hours, k, rng)
            where = ", ".join(f"{w}: {v}" for w, v in lq["where"].most_common()) or "-"
            lq_rows.append((f"latency+quality, {k} seg", [f"{lq['false']} of {lq['runs']}",
                                                          f"{lq['false'] / lq['runs']:.2%}", "calibrated", where, ""]))
        if args.lq_regressions:
            lqr = run_lq_regressions(args.lq_regressions, args.rps, k, rng)
            for kind in ("latency", "quality"):
                res = {(m, p): lqr[(kind, m, p)] for m in MULTIPLES for p in STAGES}
                report_detection(f"{kind.upper()}, {k} segment(s), {args.lq_regressions} canaries per cell", res,
                                 (3 * WINDOW + 1) * 60)
    print()
    table(f"A/A FALSE ROLLBACKS over a full schedule ({len(STAGES)} stages x {args.hours:g} h) [target <= 1 % of "
          "canaries, all triggers]", aa_rows + lq_rows, ["false", "rate", "bound by construction", "first at stage",
                                                          "first rule"])
    if args.fairness:
        fair = run_fairness(args.fairness, args.rps, rng)
        table("FAIRNESS: one subgroup of 4 at +2 pp errors from the stage's start, tolerance 1 pp: the gate HOLDS "
              "the stage (never rolls back)", [
                  ("held within 10 min", [_share(fair[p], 10) for p in STAGES]),
                  ("held within 60 min", [_share(fair[p], 60) for p in STAGES]),
                  ("held within N min, p50/p95", [f"{_q(fair[p], 50)}/{_q(fair[p], 95)}" for p in STAGES])],
              [f"{p} %" for p in STAGES])
    print(f"File-router push (onset-to-0 % = decision + push): median {router_push_ms():.1f} ms")
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
