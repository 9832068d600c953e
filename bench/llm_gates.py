"""Decision quality of the LLM serving gates, the output-schema rollback rule and the availability
gate, as monitoring.evaluator.decide runs them, on simulated stages.

    python bench/llm_gates.py [--trials 2000] [--seed 1]

Each trial draws one stage of a canary against production and asks the product's `decide` for
its gates and rollback triggers (the stage's numbers stand for the last window too, as after one
window of a stage). Counts are binomial; tokens per request are lognormal per request (median
400, σ 0.8, so about 0.9 of their mean as spread), cost proportional to tokens. A/A stages
(identical to production) show the false red and false rollback rates; regressions how often the
gate is red and the rule rolls back. Prints the figures; not a test.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "canaryhub.settings")

from monitoring.evaluator import decide  # noqa: E402
from monitoring.samples import Sample  # noqa: E402
from monitoring.thresholds import DEFAULT_THRESHOLDS  # noqa: E402

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
PRODUCTION_REQUESTS = 300_000
MU, SIGMA = math.log(400), 0.8


def tokens(rng: np.random.Generator, n: int) -> float:
    """The sum of n lognormal per-request token counts (normal approximation beyond 5,000)."""
    if n <= 5000:
        return float(rng.lognormal(MU, SIGMA, n).sum())
    mean = math.exp(MU + SIGMA**2 / 2)
    sd = mean * math.sqrt(math.exp(SIGMA**2) - 1)
    return float(rng.normal(n * mean, math.sqrt(n) * sd))


def stage(rng: np.random.Generator, n: int, *, schema: float, blocks: float, unavailable: float,
          token_factor: float = 1.0) -> Sample:
    t = tokens(rng, n) * token_factor
    down = int(rng.binomial(n, unavailable))
    return Sample(requests=n, errors=down + int(rng.binomial(n, 0.002)), unavailable=down, tokens_in=t * 0.7,
                  tokens_out=t * 0.3, cost_usd=t * 1e-6, guardrail_blocks=int(rng.binomial(n, blocks)),
                  schema_failures=int(rng.binomial(n, schema)), last_seen=NOW - timedelta(seconds=5), present=True)


BASE = {"schema": 0.001, "blocks": 0.005, "unavailable": 0.0005}
SCENARIOS = [
    # (name, canary requests, canary changes, gate or trigger, what is counted)
    ("A/A, 500 requests", 500, {}, None),
    ("A/A, 3,000 requests", 3000, {}, None),
    ("A/A, 20,000 requests", 20_000, {}, None),
    ("A/A, 100,000 requests", 100_000, {}, None),
    ("tokens ×1.3, 500 requests", 500, {"token_factor": 1.3}, "tokens_per_request"),
    ("tokens ×1.3, 3,000 requests", 3000, {"token_factor": 1.3}, "tokens_per_request"),
    ("guardrail 1.5 % vs 0.5 %, 3,000 requests", 3000, {"blocks": 0.015}, "guardrail_block_rate"),
    ("guardrail 1.5 % vs 0.5 %, 20,000 requests", 20_000, {"blocks": 0.015}, "guardrail_block_rate"),
    ("schema 0.4 % vs 0.1 %, 20,000 requests", 20_000, {"schema": 0.004}, "schema_failure_rate"),
    ("schema 1 % vs 0.1 %, 3,000 requests", 3000, {"schema": 0.01}, "schema_failure_rate"),
    ("availability 99.5 % vs 99.95 %, 3,000 requests", 3000, {"unavailable": 0.005}, "availability"),
    ("availability 99.5 % vs 99.95 %, 20,000 requests", 20_000, {"unavailable": 0.005}, "availability"),
]
GATES = ("tokens_per_request", "cost_per_request", "guardrail_block_rate", "schema_failure_rate", "availability")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{args.trials} trials a row; production {PRODUCTION_REQUESTS:,} requests, schema failures 0.1 %, "
          "guardrail blocks 0.5 %, unavailable 0.05 %")
    print(f"{'scenario':52} " + " ".join(f"{g[:14]:>14}" for g in GATES) + "  schema rollback")
    for name, n, change, _ in SCENARIOS:
        red = dict.fromkeys(GATES, 0)
        green = dict.fromkeys(GATES, 0)
        rollbacks = 0
        for _ in range(args.trials):
            canary = stage(rng, n, **{**BASE, **change})
            production = stage(rng, PRODUCTION_REQUESTS, **BASE)
            pair = {"canary": canary, "production": production}
            d = decide(thresholds=DEFAULT_THRESHOLDS, window=pair, stage=pair, now=NOW, staleness_limit_s=300,
                       traffic_percent=1, random_split=False, stage_elapsed_s=3600)
            for g in d.gates:
                if g.name in red:
                    red[g.name] += g.status.value == "red"
                    green[g.name] += g.status.value == "green"
            rollbacks += any(t.metric == "schema_failure_rate" for t in d.rollback)
        cells = " ".join(f"{red[g] / args.trials:>6.1%}/{green[g] / args.trials:>6.1%}" for g in GATES)
        print(f"{name:52} {cells}  {rollbacks / args.trials:>6.2%}")
    print("each gate: share red / share green (the rest insufficient); schema rollback: share rolled back")


if __name__ == "__main__":
    main()
