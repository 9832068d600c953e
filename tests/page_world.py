"""One seeded set of objects from which every page of the application has something to show:
a certified canary with its certificate, a live canary with evaluations (the charts), a rolled-back
canary with its incident, a threshold change under review, a router, an evidence export and
a personal API token. The page permission matrix and the browser's Content-Security-Policy walk use it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from governance.access.permissions import Role
from governance.certificates.services import certificate_decide
from governance.evidence.services import evidence_export_request
from governance.incidents.models import Incident
from governance.thresholds.services import threshold_change_request
from governance.tokens.services import token_create
from releases.canaries import services as lifecycle
from releases.canaries.models import Canary
from releases.register import services
from releases.register.models import MetricConfigChange
from releases.routing.services import router_config_save
from tests.factories import make_evaluation, window_inputs
from tests.governance.helpers import make_model, run_to_completion

# The roles of the permission matrix (tests/governance/access/test_permission_matrix.py).
HUMANS = ("owner", "other_owner", "platform", "mrm", "gov", "risk", "oncall", "auditor")
ROLES = {"owner": Role.MODEL_OWNER, "other_owner": Role.MODEL_OWNER, "platform": Role.PLATFORM, "mrm": Role.MRM,
         "gov": Role.AI_GOVERNANCE, "risk": Role.RISK_OFFICER, "oncall": Role.ON_CALL, "auditor": Role.AUDITOR}


def make_people(role_user) -> dict[str, Any]:
    people = {who: role_user(role, username=who, first_name=who.title(), last_name="Test")
              for who, role in ROLES.items()}
    people["nobody"] = role_user(username="nobody")
    return people


def seed_pages(people: dict[str, Any]) -> dict[str, Any]:
    """The objects; returns the values the pages' URLs need."""
    platform, owner = people["platform"], people["owner"]
    make_model(platform)  # scorer, owned by `owner`: 1.0.0 in production, 1.1.0 registered
    done = run_to_completion(owner=owner, mrm=people["mrm"])
    certificate = certificate_decide(actor=people["gov"], canary_id=done.pk, issue=True)
    services.model_register(actor=platform, name="other", display_name="Other", risk_tier="low",
                            owner="other_owner", on_call="oncall@x")
    services.version_register(actor=platform, model_name="other", version="1.0.0", artifact_uri="s3://o1",
                              status="production")
    services.version_register(actor=platform, model_name="other", version="1.1.0", artifact_uri="s3://o2")
    # A rolled-back canary of `other`: an incident.
    rolled = lifecycle.canary_initiate(actor=people["other_owner"], model_name="other", version="1.1.0")
    lifecycle.canary_rollback(actor=people["other_owner"], canary_id=rolled.pk, reason="quality dropped")
    incident = Incident.objects.filter(canary_id=rolled.pk).first()
    # A live canary of scorer with two evaluations (the charts) and a threshold change to review.
    services.version_register(actor=platform, model_name="scorer", version="1.2.0", artifact_uri="s3://3")
    live = lifecycle.canary_initiate(actor=owner, model_name="scorer", version="1.2.0", schedule="standard")
    hour_ago = timezone.now() - timedelta(hours=1)
    Canary.objects.filter(pk=live.pk).update(stage_entered_at=hour_ago, initiated_at=hour_ago)
    live.refresh_from_db()
    now = timezone.now()
    make_evaluation(live, window_end=now - timedelta(minutes=40), values={"error_rate": (0.2, 0.1)},
                    inputs=window_inputs(canary=(2000, 6), production=(198000, 198), p99_s=(0.3, 0.2)))
    make_evaluation(live, window_end=now - timedelta(minutes=20), values={"error_rate": (0.05, 0.1)},
                    inputs=window_inputs(canary=(1000, 1), production=(99000, 99)))
    change = threshold_change_request(actor=owner, canary_id=live.pk,
                                      proposed={"promote": {"latency_p99_ratio": 1.1}},
                                      reason="tighter latency after review")
    services.version_update(actor=platform, model_name="scorer", version=live.version.version,
                            changes={"metrics": {"provider": "prometheus"}})
    metric_change = MetricConfigChange.objects.get(status="pending")
    router_config_save(actor=platform, kind="webhook", name="mesh", target="https://mesh.example.test/split",
                       options={"timeout_s": 3}, secret="s3cret-value-for-the-mesh")
    export = evidence_export_request(actor=people["risk"], scope="model", model_name="scorer")
    token, _ = token_create(actor=platform, user=people["risk"], name="risk's script")
    return {"done": done.pk, "live": live.pk, "rolled": rolled.pk, "certificate": certificate.pk,
            "incident": incident.pk if incident else None, "change": change.pk, "metric_change": metric_change.pk, "router": "mesh",
            "export": export.pk, "token": token.prefix}
