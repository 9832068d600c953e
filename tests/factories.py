from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from monitoring.thresholds import DEFAULT_THRESHOLDS
from releases.register.models import AIModel, ModelVersion, RiskTier

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.test")
    @factory.post_generation
    def password(obj, create: bool, extracted: str | None, **kwargs) -> None:  # noqa: N805
        obj.set_password(extracted or PASSWORD)
        if create:
            obj.save(update_fields=["password"])


class AIModelFactory(factory.django.DjangoModelFactory):
    """Rows straight into the database, for tests of reads. Tests of writes call services."""

    class Meta:
        model = AIModel

    name = factory.Sequence(lambda n: f"model-{n}")
    display_name = factory.LazyAttribute(lambda m: m.name.replace("-", " ").title())
    risk_tier = RiskTier.MEDIUM
    owner = factory.SubFactory(UserFactory)
    on_call = "oncall@example.test"


class ModelVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ModelVersion

    model = factory.SubFactory(AIModelFactory)
    major, minor, patch = 1, 0, 0
    version = factory.LazyAttribute(lambda v: f"{v.major}.{v.minor}.{v.patch}")
    artifact_uri = factory.LazyAttribute(lambda v: f"s3://models/{v.model.name}/{v.version}")
    change_type = ModelVersion.ChangeType.INITIAL
    thresholds = factory.LazyFunction(lambda: {k: dict(v) for k, v in DEFAULT_THRESHOLDS.items()})
    metrics = factory.LazyFunction(lambda: {"provider": "push", "queries": {}})
    registered_by = factory.SelfAttribute("model.owner")


def make_evaluation(canary, *, status: str = "green", window_end=None, stage_index: int | None = None,
                    inputs: dict | None = None, values: dict | None = None, extra_gates: tuple[str, ...] = (),
                    **gate_status):
    """An Evaluation record as the evaluator would write it: every promotion gate, and each gate
    named in `extra_gates` (LLM serving, availability), `status` unless overridden per gate
    (`latency_p99="red"`), with `inputs` (default: none to speak of) and each gate's (value,
    limit) from `values` (default 0.0 and 0.0)."""
    from datetime import timedelta

    from django.utils import timezone

    from canaryhub.canonical import normalise_json
    from monitoring.evaluations import PROMOTION_GATES, Gate, evaluation_hash, overall_verdict
    from monitoring.models import Evaluation

    window_end = window_end or timezone.now()
    window_start = window_end - timedelta(minutes=5)
    stage_index = canary.stage_index if stage_index is None else stage_index
    values = values or {}
    gates = [
        Gate(name=name, status=gate_status.get(name, status), value=values.get(name, (0.0, 0.0))[0],
             limit=values.get(name, (0.0, 0.0))[1]).to_dict()
        for name in (*PROMOTION_GATES, *extra_gates)
    ]
    gates = normalise_json(gates)
    verdict = overall_verdict(gates).value
    inputs = normalise_json(inputs or {"source": "test"})
    return Evaluation.objects.create(
        canary=canary, stage_index=stage_index, window_start=window_start, window_end=window_end, gates=gates,
        verdict=verdict, inputs=inputs,
        content_hash=evaluation_hash(
            canary_id=canary.pk, stage_index=stage_index, window_start=window_start, window_end=window_end,
            gates=gates, verdict=verdict, inputs=inputs,
        ),
    )


def window_inputs(*, canary: tuple[float, float] = (1000, 1), production: tuple[float, float] = (99000, 99),
                  p99_s: tuple[float, float] = (0.2, 0.2), quality: tuple[float, float] = (0.9, 0.9),
                  scored: tuple[float, float] = (100, 9900), safety: float = 0, traffic_percent: float = 1,
                  difference_pp: float = 0.0, ci_pp: tuple[float, float] = (-0.05, 0.05),
                  warnings: list | None = None, latency_buckets: tuple[list, list] | None = None,
                  p50_s: tuple[float, float] | None = None, p95_s: tuple[float, float] | None = None,
                  tokens: tuple[tuple[float, float], tuple[float, float]] | None = None,
                  cost_usd: tuple[float, float] | None = None, segments: dict | None = None,
                  guardrail_blocks: tuple[float, float] | None = None,
                  schema_failures: tuple[float, float] | None = None,
                  unavailable: tuple[float, float] | None = None,
                  response_tokens: tuple[tuple[float, float], tuple[float, float]] | None = None) -> dict:
    """An evaluation's `inputs` as monitoring.services.judge stores them, with the numbers the
    dashboard reads: each side's (requests, errors) in the window, p99, quality and scored counts,
    the canary's safety violations, the configured percent and the error gate's difference;
    optionally p50/p95, (tokens_in, tokens_out), cost, guardrail blocks, schema failures,
    unavailable requests and the response length's (p50, p95) per side, and `segments` as
    {name: ((canary requests, errors), (production requests, errors))}, stored as judge_segments
    stores them (a name listed in `segments["_red"]` is red)."""
    def side(role: int) -> dict:
        requests, errors = (canary, production)[role]
        out = {"requests": requests, "errors": errors, "p99_s": p99_s[role], "quality_mean": quality[role],
               "quality_count": scored[role], "safety_violations": safety if role == 0 else 0,
               "anomaly_alerts": 0, "last_seen": None}
        for name, pair in (("p50_s", p50_s), ("p95_s", p95_s), ("cost_usd", cost_usd),
                           ("guardrail_blocks", guardrail_blocks), ("schema_failures", schema_failures),
                           ("unavailable", unavailable)):
            if pair is not None:
                out[name] = pair[role]
        if unavailable is not None:
            out["availability"] = 1 - unavailable[role] / requests if requests else None
        if response_tokens is not None:
            out["response_tokens_p50"], out["response_tokens_p95"] = response_tokens[role]
        if tokens is not None:
            out["tokens_in"], out["tokens_out"] = tokens[role]
        return out

    raw = None
    if latency_buckets is not None:
        raw = {"stage": {"canary": {"latency_buckets": latency_buckets[0]},
                         "production": {"latency_buckets": latency_buckets[1]}}}
    return {
        "source": "test", "traffic_percent": traffic_percent, "raw": raw,
        "window": {"canary": side(0), "production": side(1)},
        "gates": {"error_rate": {"difference": difference_pp / 100, "ci_pp": list(ci_pp),
                                 "sample_size": {"canary": canary[0], "production": production[0]}}},
        "warnings": warnings or [], "rollback_triggers": [],
        **({"segments": _segments(segments)} if segments else {}),
    }


def _segments(segments: dict) -> dict:
    red = set(segments.get("_red", ()))
    by_segment = {}
    for name, pair in segments.items():
        if name == "_red":
            continue
        brief = {role: {"requests": r, "errors": e, "p99_s": 0.2, "quality_mean": 0.9, "quality_count": 0}
                 for role, (r, e) in zip(("canary", "production"), pair, strict=True)}
        by_segment[name] = {"window": brief, "stage": brief, "tests": {}, "rollback": [],
                            "red": ["error rate above production's"] if name in red else []}
    return {"judged": {"segments": len(by_segment)}, "by_segment": by_segment}
