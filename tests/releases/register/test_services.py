from __future__ import annotations

import pytest

from canaryhub.errors import Conflict, NotFound, PermissionRefused, ValidationFailed
from governance.access.permissions import Principal, Role
from governance.audit.models import AuditEvent
from monitoring.thresholds import DEFAULT_THRESHOLDS
from releases.register import services
from releases.register.models import AIModel, ModelVersion
from releases.register.services import change_type_between, parse_semver


@pytest.fixture
def model(platform, owner):
    return services.model_register(
        actor=platform, name="fraud-scorer", display_name="Fraud scorer", risk_tier="high", owner="owner",
        on_call="fraud-oncall@example.test",
        consumers=[{"name": "payments", "contact": "payments@example.test", "channel": "email"}],
    )


def register(actor, version, **kw):
    return services.version_register(
        actor=actor, model_name="fraud-scorer", version=version, artifact_uri=f"s3://m/{version}", **kw
    )


@pytest.mark.parametrize(
    ("new", "prod", "expected"),
    [
        ((1, 0, 0), None, "INITIAL"),
        ((2, 0, 0), (1, 9, 9), "MAJOR"),
        ((1, 3, 0), (1, 2, 7), "MINOR"),
        ((1, 2, 8), (1, 2, 7), "PATCH"),
    ],
)
def test_change_type_against_production(new, prod, expected):
    assert change_type_between(new, prod) == expected


@pytest.mark.parametrize("bad", ["1.0", "1.0.0.0", "v1.0.0", "01.0.0", "1.0.0-rc1", "", "1..0", " 1.0.0", 100])
def test_semver_is_strict(bad):
    with pytest.raises(ValidationFailed) as exc:
        parse_semver(bad)
    assert "version" in exc.value.errors


def test_register_model_writes_audit_event(model, platform):
    assert model.owner.username == "owner"
    assert list(model.consumers.values_list("name", flat=True)) == ["payments"]
    event = AuditEvent.objects.get(action="model.registered")
    assert (event.actor_name, event.object_id) == ("platform", "fraud-scorer")
    assert event.payload["consumers"][0]["contact"] == "payments@example.test"


def test_owner_registers_only_models_they_own(owner, role_user):
    role_user(Role.MODEL_OWNER, username="someone-else")
    with pytest.raises(PermissionRefused):
        services.model_register(actor=owner, name="x", display_name="X", risk_tier="low", owner="someone-else", on_call="c")
    services.model_register(actor=owner, name="x", display_name="X", risk_tier="low", owner="owner", on_call="c")


def test_owner_must_be_in_the_model_owner_group(platform, mrm):
    with pytest.raises(ValidationFailed) as exc:
        services.model_register(actor=platform, name="x", display_name="X", risk_tier="low", owner="mrm", on_call="c")
    assert "owner" in exc.value.errors


def test_duplicate_model_name_is_a_conflict(model, platform):
    with pytest.raises(Conflict):
        services.model_register(actor=platform, name="fraud-scorer", display_name="X", risk_tier="low", owner="owner", on_call="c")


@pytest.mark.parametrize("name", ["Fraud", "fraud_scorer", "-fraud", "fraud-", "a" * 65, "", "new"])
def test_model_name_must_be_a_slug(platform, owner, name):
    with pytest.raises(ValidationFailed) as exc:
        services.model_register(actor=platform, name=name, display_name="X", risk_tier="low", owner="owner", on_call="c")
    assert "name" in exc.value.errors


def test_consumers_are_validated_per_item(platform, owner):
    with pytest.raises(ValidationFailed) as exc:
        services.model_register(
            actor=platform, name="m", display_name="M", risk_tier="low", owner="owner", on_call="c",
            consumers=[{"name": "a", "contact": "x", "channel": "carrier-pigeon"}, "nope", {"name": "b", "contact": "y", "extra": 1}],
        )
    assert set(exc.value.errors) == {"consumers[0].channel", "consumers[1]", "consumers[2]"}
    assert not AIModel.objects.exists()


def test_first_version_may_be_the_production_incumbent(model, owner):
    prod = register(owner, "1.4.0", status="production")
    assert (prod.status, prod.change_type, prod.baseline) == ("production", "INITIAL", None)
    with pytest.raises(Conflict):
        register(owner, "2.0.0", status="production")


def test_later_version_gets_change_type_and_baseline(model, owner):
    prod = register(owner, "1.4.0", status="production")
    v = register(owner, "1.5.0")
    assert (v.status, v.change_type, v.baseline_id) == ("registered", "MINOR", prod.pk)
    assert v.thresholds == DEFAULT_THRESHOLDS


def test_version_must_be_greater_than_production(model, owner):
    register(owner, "1.4.0", status="production")
    with pytest.raises(ValidationFailed) as exc:
        register(owner, "1.3.9")
    assert "1.4.0" in exc.value.errors["version"][0]


def test_duplicate_version_is_a_conflict(model, owner):
    register(owner, "1.0.0")
    with pytest.raises(Conflict):
        register(owner, "1.0.0")


def test_versions_order_numerically(model, owner):
    for v in ["1.9.0", "1.10.0", "1.2.0"]:
        register(owner, v)
    assert [v.version for v in model.versions.all()] == ["1.10.0", "1.9.0", "1.2.0"]


def test_thresholds_partial_override_keeps_defaults(model, owner):
    v = register(owner, "1.0.0", thresholds={"promote": {"error_rate_pp": 0.05}})
    assert v.thresholds["promote"]["error_rate_pp"] == 0.05
    assert v.thresholds["rollback"] == DEFAULT_THRESHOLDS["rollback"]


def test_frozen_version_refuses_threshold_change_with_409(model, owner):
    v = register(owner, "1.0.0")
    services.version_update(actor=owner, model_name="fraud-scorer", version="1.0.0", changes={"thresholds": {"promote": {"quality_ratio": 0.99}}})
    ModelVersion.objects.filter(pk=v.pk).update(status="canary")  # a canary has started
    with pytest.raises(Conflict) as exc:
        services.version_update(actor=owner, model_name="fraud-scorer", version="1.0.0", changes={"thresholds": {}})
    assert "frozen" in exc.value.detail and "governance" in exc.value.detail
    with pytest.raises(PermissionRefused):  # the metric source is not the owner's to choose
        services.version_update(actor=owner, model_name="fraud-scorer", version="1.0.0", changes={"metrics": {"provider": "push"}})


def test_version_update_audits_the_diff(model, owner):
    register(owner, "1.0.0")
    services.version_update(actor=owner, model_name="fraud-scorer", version="1.0.0", changes={"artifact_uri": "s3://new"})
    event = AuditEvent.objects.get(action="version.updated")
    assert event.payload["changes"]["artifact_uri"] == ["s3://m/1.0.0", "s3://new"]


def test_model_update_without_change_writes_nothing(model, platform):
    before = AuditEvent.objects.count()
    services.model_update(actor=platform, name="fraud-scorer", changes={"risk_tier": "high"})
    assert AuditEvent.objects.count() == before


def test_model_update_unknown_field_is_refused(model, platform):
    with pytest.raises(ValidationFailed):
        services.model_update(actor=platform, name="fraud-scorer", changes={"name": "renamed"})


def test_unknown_model_is_not_found(platform):
    with pytest.raises(NotFound):
        services.model_update(actor=platform, name="nope", changes={})


def test_service_account_registers_versions_only_in_scope(model, role_user):
    bot = role_user(Role.SERVICE_ACCOUNT, username="ci")
    with pytest.raises(PermissionRefused):
        register(Principal(user=bot, scope=frozenset()), "1.0.0")
    v = register(Principal(user=bot, scope=frozenset({model.pk}), token_prefix="abcd"), "1.0.0")
    assert v.registered_by == bot
    assert AuditEvent.objects.get(action="version.registered").payload["via_token"] == "abcd"
