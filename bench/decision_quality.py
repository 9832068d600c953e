"""Decision quality of the rollback rule (monitoring.statistics), on simulated canaries.

    python bench/decision_quality.py [--aa 1000] [--regressions 400] [--rps 1000] [--hours 24]

A/A canaries (canary identical to production) run a full standard schedule (1, 5, 10, 25, 50 %,
`--hours` per stage, a tick every minute over a 5-minute window): any rollback is a false one.
Regressed canaries get an error spike, a latency regression or a quality drop at 1.0×, 1.5×, 2×
and 4× the distance of the rollback threshold, starting at a random moment of a random stage;
detection counts if the rule fires within two windows (10 minutes) of the onset. It is also
counted from the breach, the tick at which the 5-minute window's expected value is past the
threshold (for a step regression, once more than 1/multiple of the window is regressed).
Onset-to-0 % adds the router push, measured on the file router. False rollbacks are listed by
metric and stage. Prints the figures; not a test.

Traffic per minute is Poisson(rps × 60 × share); latency lognormal (median 120 ms), quality
normal (0.82 ± 0.08) in the simulator's buckets; production error rate 1 %.
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
    """Per tick, the metrics whose rollback trigger fires ("" where none does). A cheap, looser
    magnitude pre-check picks candidates; the real rule (monitoring.evaluator.rollback_triggers)
    decides each candidate."""
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = wc["err"] / np.maximum(wc["req"], 1) - wp["err"] / np.maximum(wp["req"], 1)
        qc = (wc["qual"] * QMID).sum(-1) / np.maximum(wc["qual"].sum(-1), 1)
        qp = (wp["qual"] * QMID).sum(-1) / np.maximum(wp["qual"].sum(-1), 1)
        # The last two windows pooled (the window ending one window length before, no overlap).
        two_c = wc["err"][WINDOW:] + wc["err"][:-WINDOW], wc["req"][WINDOW:] + wc["req"][:-WINDOW]
        two_p = wp["err"][WINDOW:] + wp["err"][:-WINDOW], wp["req"][WINDOW:] + wp["req"][:-WINDOW]
        pooled = np.zeros(len(diff))
        pooled[WINDOW:] = two_c[0] / np.maximum(two_c[1], 1) - two_p[0] / np.maximum(two_p[1], 1)
        stage_diff = sc["err"] / np.maximum(sc["req"], 1) - sp["err"] / np.maximum(sp["req"], 1)
    lat_ratio = p99(wc["lat"]) / p99(wp["lat"])
    margin = ROLLBACK["error_rate_pp"] / 100
    candidates = np.where((diff > margin * 0.9) | (pooled > margin * 0.9) | (stage_diff > margin * 0.9)
                          | (lat_ratio > 1.2)
                          | (qc < qp * (ROLLBACK["quality_ratio"] + 0.02)))[0]
    out = np.full(len(diff), "", dtype=object)
    for i in candidates:
        earlier = {"canary": sample(wc, i - WINDOW), "production": sample(wp, i - WINDOW)} if i >= WINDOW else None
        stage = {"canary": Sample(requests=float(sc["req"][i]), errors=float(sc["err"][i])),
                 "production": Sample(requests=float(sp["req"][i]), errors=float(sp["err"][i]))}
        fired, _, _ = rollback_triggers({"canary": sample(wc, i), "production": sample(wp, i)}, ROLLBACK, earlier,
                                        stage, alpha=alpha)
        out[i] = ",".join(t.metric for t in fired)
    return out


def run_aa(n: int, rps: float, hours: float, rng: np.random.Generator) -> tuple[Counter[str], int]:
    """False rollbacks by "metric at stage", and the number of window tests."""
    false_rollbacks: Counter[str] = Counter()
    ticks = 0
    per_stage = int(hours * 60)
    for _ in range(n):
        for percent in STAGES:
            share = percent / 100
            mc = minutes(rng, BASE, rps * 60 * share, per_stage + WINDOW)
            mp = minutes(rng, BASE, rps * 60 * (1 - share), per_stage + WINDOW)
            f = fires(windows(mc), windows(mp), so_far(mc), so_far(mp))
            ticks += len(f)
            hit = np.flatnonzero(f != "")
            if len(hit):
                false_rollbacks[f"{f[hit[0]]} at {percent} %"] += 1
                break
    return false_rollbacks, ticks


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
    for kind in ("error", "latency", "quality"):
        for multiple in (1.0, 1.5, 2.0, 4.0):
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


def segmented(rng: np.random.Generator, rate_per_min: float, k: int, n_min: int,
              regressed: dict[int, Behaviour] | None = None, before: int = 0) -> list[dict[str, np.ndarray]]:
    """Minutes of `k` equal segments; segment i switches to `regressed[i]` after `before` minutes."""
    out = []
    for i in range(k):
        b = (regressed or {}).get(i)
        if b is None:
            out.append(minutes(rng, BASE, rate_per_min / k, n_min))
        else:
            head, tail = minutes(rng, BASE, rate_per_min / k, before), minutes(rng, b, rate_per_min / k, n_min - before)
            out.append({key: np.concatenate([head[key], tail[key]]) for key in head})
    return out


def fires_segmented(mc: list[dict[str, np.ndarray]], mp: list[dict[str, np.ndarray]],
                    prefix: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 0.0), (0.0, 0.0))) -> np.ndarray:
    """Per tick, whether the canary as a whole or any of its segments (each against production's
    same segment, at the Bonferroni share of the level, as monitoring.evaluator.judge_segments)
    rolls back."""
    k = len(mc)
    whole_c = {key: sum(m[key] for m in mc) for key in mc[0]}
    whole_p = {key: sum(m[key] for m in mp) for key in mp[0]}
    hit = fires(windows(whole_c), windows(whole_p), so_far(whole_c, prefix[0]), so_far(whole_p, prefix[1])) != ""
    alpha = st.segment_alpha(st.ROLLBACK_ALPHA, k)
    share_c = tuple(v / k for v in prefix[0])
    share_p = tuple(v / k for v in prefix[1])
    for c, p in zip(mc, mp, strict=True):
        hit |= fires(windows(c), windows(p), so_far(c, share_c), so_far(p, share_p), alpha=alpha) != ""
    return hit


def run_segments(n_aa: int, n_reg: int, k: int, rps: float, hours: float, rng: np.random.Generator) -> dict:
    """A/A canaries with `k` segments judged over the full schedule, and segment-only regressions:
    one segment of `k` at +2 pp errors (the canary as a whole +2/k pp), onset at a random stage and
    moment; detection within two windows (10 minutes) of the onset."""
    false_rb = 0
    per_stage = int(hours * 60)
    for _ in range(n_aa):
        for percent in STAGES:
            share = percent / 100
            mc = segmented(rng, rps * 60 * share, k, per_stage + WINDOW)
            mp = segmented(rng, rps * 60 * (1 - share), k, per_stage + WINDOW)
            if fires_segmented(mc, mp).any():
                false_rb += 1
                break
    bad = Behaviour(**vars(BASE))
    bad.error_rate = BASE.error_rate + 0.02
    detected, by_stage = 0, Counter()
    stage_n: Counter[int] = Counter()
    for _ in range(n_reg):
        percent = int(STAGES[rng.integers(len(STAGES))])
        share = percent / 100
        before, after = 10, 3 * WINDOW + 1
        mc = segmented(rng, rps * 60 * share, k, before + after, regressed={0: bad}, before=before)
        mp = segmented(rng, rps * 60 * (1 - share), k, before + after)
        prefix = healthy_prefix(rng, rps * 60, share, hours)
        f = fires_segmented(mc, mp, prefix)
        onset_tick = before - WINDOW + 1
        hit = np.flatnonzero(f[onset_tick:])
        caught = len(hit) > 0 and int(hit[0]) < 2 * WINDOW
        detected += caught
        by_stage[percent] += caught
        stage_n[percent] += 1
    return {"false_rollbacks": false_rb, "aa": n_aa, "detected": detected, "regressions": n_reg,
            "by_stage": {pct: by_stage[pct] / stage_n[pct] for pct in sorted(stage_n)}}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aa", type=int, default=1000)
    parser.add_argument("--regressions", type=int, default=300, help="per kind and magnitude")
    parser.add_argument("--rps", type=float, default=1000.0, help="total requests per second of the model")
    parser.add_argument("--hours", type=float, default=24.0, help="residence per stage")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--segments", type=int, default=4, help="segments per canary in the segment runs (0: none)")
    parser.add_argument("--segment-aa", type=int, default=None, help="A/A canaries with segments (default: --aa)")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes for a shared machine: --aa 20 --regressions 30 --hours 2 --segment-aa 10")
    args = parser.parse_args()
    if args.quick:
        args.aa, args.regressions, args.hours, args.segment_aa = 20, 30, 2.0, 10
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()
    if args.segments:
        seg = run_segments(args.aa if args.segment_aa is None else args.segment_aa, args.regressions, args.segments,
                           args.rps, args.hours, rng)
        print(f"Segments: {args.segments} equal segments, each judged against production's same segment "
              f"at 1e-6/{args.segments} per test, beside the canary as a whole")
        print(f"  A/A false rollbacks over the schedule: {seg['false_rollbacks']} of {seg['aa']} "
              f"({seg['false_rollbacks'] / max(seg['aa'], 1):.2%})  [target <= 1%]")
        stages = "  ".join(f"{pct} %: {rate:.2%}" for pct, rate in seg["by_stage"].items())
        print(f"  one segment +2 pp errors (whole canary +{2 / args.segments:.2g} pp): detected within 10 min "
              f"{seg['detected'] / max(seg['regressions'], 1):.2%}  [target >= 99%]  by stage: {stages}")
    false_rb, ticks = run_aa(args.aa, args.rps, args.hours, rng)
    total = sum(false_rb.values())
    print(f"A/A: {args.aa} canaries, standard schedule {STAGES} % x {args.hours:g} h, {args.rps:g} req/s, "
          f"{ticks:,} window tests")
    where = ", ".join(f"{k} x{v}" for k, v in false_rb.most_common())
    print(f"  false rollbacks: {total} ({total / args.aa:.2%})  [target <= 1%]" + (f"  ({where})" if where else ""))
    push_ms = router_push_ms()
    res = run_regressions(args.regressions, args.rps, args.hours, rng)
    print(f"Regressions: {args.regressions} canaries per kind and magnitude, onset at a random stage; "
          f"detection = rollback within 2 windows (10 min) of the onset")
    all_delays: list[float] = []
    for (kind, multiple), outcomes in res.items():
        hits = [o.delay_s for o in outcomes if o.delay_s is not None]
        all_delays.extend(d for d in hits if multiple > 1.0)
        med = f"{statistics.median(hits):.0f} s" if hits else "-"
        print(f"  {kind:8s} x{multiple:<4g} of the threshold distance: detected {len(hits) / len(outcomes):7.2%}, "
              f"median onset-to-decision {med}")
    beyond = [o for (k, m), os_ in res.items() if m > 1.0 for o in os_]
    rate = sum(o.delay_s is not None for o in beyond) / len(beyond)
    print(f"  beyond the threshold (x1.5, x2, x4; all kinds): detected {rate:.2%}  [target >= 99%]")
    at_stage = {pct: [o for o in beyond if o.percent == pct] for pct in STAGES}
    by_stage = "  ".join(f"{pct} %: {sum(o.delay_s is not None for o in os_) / max(1, len(os_)):.2%}"
                         for pct, os_ in at_stage.items())
    print(f"    by stage: {by_stage}")
    late = sum(o.after_breach for o in beyond) / len(beyond)
    print(f"  within 2 windows of the breach (the 5-minute window's expected value past the threshold, "
          f"{', '.join(f'x{m:g} {breach_tick(m)} min' for m in (1.5, 2.0, 4.0))} after the onset): {late:.2%}")
    if all_delays:
        print(f"  median onset-to-0%: {statistics.median(all_delays) + push_ms / 1000:.0f} s "
              f"(decision {statistics.median(all_delays):.0f} s + file-router push {push_ms:.1f} ms)")
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
