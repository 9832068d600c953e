"""Writes to the Model Register. Every function checks access first, validates, changes the
database and appends its audit event in one transaction."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from canaryhub.api import DESCRIPTION_MAX
from canaryhub.errors import Conflict, NotFound, PermissionRefused, ValidationFailed
from governance.access.permissions import Action, Role, as_principal, may_see_model, require, roles_of
from governance.access.reviews import review_side
from governance.audit.services import audit_append
from monitoring.models import Observation
from monitoring.services import observation_record
from monitoring.thresholds import metrics_with_defaults, thresholds_with_defaults
from releases.register import states
from releases.register.models import SEMVER_RE, AIModel, Consumer, MetricConfigChange, ModelVersion, RiskTier

User = get_user_model()

MODEL_FIELDS = ("display_name", "description", "risk_tier", "owner", "on_call")
# The fields that decide who must sign a canary: frozen on the canary at initiation, and not
# changeable on the model while one of its canaries is active.
SIGNING_FIELDS = ("risk_tier", "owner")
# Names that are paths of the register's own pages (/models/new/).
RESERVED_MODEL_NAMES = frozenset({"new"})


def _clean(instance: models.Model, *, exclude: Iterable[str] = ()) -> None:
    # Free text is copied into the audit trail: bounded on every way in (API, page, command).
    if len(getattr(instance, "description", "") or "") > DESCRIPTION_MAX:
        raise ValidationFailed.field("description", f"at most {DESCRIPTION_MAX} characters")
    try:
        instance.full_clean(exclude=list(exclude), validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        errors = {field: [str(m) for m in messages] for field, messages in exc.message_dict.items()}
        raise ValidationFailed("invalid input", errors=errors) from exc


def _owner(username: Any) -> Any:
    if not isinstance(username, str) or not username:
        raise ValidationFailed.field("owner", "a username is required")
    user = User.objects.filter(username=username, is_active=True).first()
    if user is None:
        raise ValidationFailed.field("owner", f"no active user {username!r}")
    if Role.MODEL_OWNER not in roles_of(user):
        raise ValidationFailed.field("owner", f"{username!r} is not in the model_owner group")
    return user


def _consumers(value: Any) -> list[Consumer]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationFailed.field("consumers", "must be a list of {name, contact, channel}")
    out: list[Consumer] = []
    errors: dict[str, list[str]] = {}
    seen: set[str] = set()
    for index, item in enumerate(value):
        path = f"consumers[{index}]"
        if not isinstance(item, dict):
            errors[path] = ["must be an object {name, contact, channel}"]
            continue
        unknown = set(item) - {"name", "contact", "channel"}
        if unknown:
            errors[path] = [f"unknown field(s): {', '.join(sorted(unknown))}"]
            continue
        consumer = Consumer(
            name=item.get("name") if isinstance(item.get("name"), str) else "",
            contact=item.get("contact") if isinstance(item.get("contact"), str) else "",
            channel=item.get("channel", Consumer.Channel.EMAIL),
        )
        try:
            consumer.full_clean(exclude=["model"], validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                errors[f"{path}.{field}"] = [str(m) for m in messages]
            continue
        if consumer.name in seen:
            errors[f"{path}.name"] = ["duplicate consumer name"]
        seen.add(consumer.name)
        out.append(consumer)
    if errors:
        raise ValidationFailed("invalid consumers", errors=errors)
    return out


def _consumer_payload(consumers: Iterable[Consumer]) -> list[dict[str, str]]:
    return [{"name": c.name, "contact": c.contact, "channel": c.channel} for c in consumers]


def model_register(
    *,
    actor: Any,
    name: str,
    display_name: str,
    risk_tier: str,
    owner: str,
    on_call: str,
    description: str = "",
    consumers: list[dict[str, Any]] | None = None,
) -> AIModel:
    model = AIModel(
        name=name, display_name=display_name, description=description or "", risk_tier=risk_tier,
        on_call=on_call,
    )
    model.owner = _owner(owner)
    require(actor, Action.REGISTER_MODEL, model=model)
    _clean(model)
    if name in RESERVED_MODEL_NAMES:
        raise ValidationFailed.field("name", f"{name!r} is reserved; choose another name")
    parsed_consumers = _consumers(consumers)
    principal = as_principal(actor)
    with transaction.atomic():
        if AIModel.objects.filter(name=name).exists():
            raise Conflict(f"a model named {name!r} is already registered")
        try:
            with transaction.atomic():
                model.save()
        except IntegrityError as exc:  # a concurrent registration won the race
            raise Conflict(f"a model named {name!r} is already registered") from exc
        for consumer in parsed_consumers:
            consumer.model = model
        Consumer.objects.bulk_create(parsed_consumers)
        audit_append(
            actor=principal.user,
            action="model.registered",
            object_type="model",
            object_id=model.name,
            payload={
                "display_name": model.display_name,
                "risk_tier": model.risk_tier,
                "owner": model.owner.get_username(),
                "on_call": model.on_call,
                "description": model.description,
                "consumers": _consumer_payload(parsed_consumers),
            },
        )
    return model


def model_update(*, actor: Any, name: str, changes: dict[str, Any]) -> AIModel:
    """Change a model's descriptive fields, owner, risk tier or consumers (replaced whole).
    The risk tier and owner cannot change while a version of the model is in canary (409)."""
    unknown = set(changes) - set(MODEL_FIELDS) - {"consumers"}
    if unknown:
        raise ValidationFailed(
            "unknown or read-only fields", errors={f: ["unknown or read-only field"] for f in sorted(unknown)}
        )
    principal = as_principal(actor)
    with transaction.atomic():
        model = AIModel.objects.select_for_update().filter(name=name).first()
        if model is None:
            raise NotFound(f"no model named {name!r}")
        require(actor, Action.CHANGE_MODEL, model=model)
        before = {f: _field_value(model, f) for f in MODEL_FIELDS}
        for field in MODEL_FIELDS:
            if field not in changes:
                continue
            if field == "owner":
                model.owner = _owner(changes["owner"])
            else:
                setattr(model, field, changes[field] if changes[field] is not None else "")
        _clean(model)
        after = {f: _field_value(model, f) for f in MODEL_FIELDS}
        diff = {f: [before[f], after[f]] for f in MODEL_FIELDS if before[f] != after[f]}
        frozen = sorted(set(diff) & set(SIGNING_FIELDS))
        if frozen:
            # The model row lock above serialises this with canary initiation.
            in_canary = model.versions.filter(status=ModelVersion.Status.CANARY).first()
            if in_canary is not None:
                raise Conflict(
                    f"{model.name} has an active canary of {in_canary.version}: its "
                    f"{' and '.join(f.replace('_', ' ') for f in frozen)} decide who must sign it and cannot "
                    "change until the canary ends"
                )
        if "consumers" in changes:
            parsed = _consumers(changes["consumers"])
            old = _consumer_payload(model.consumers.all())
            new = _consumer_payload(parsed)
            if old != new:
                model.consumers.all().delete()
                for consumer in parsed:
                    consumer.model = model
                Consumer.objects.bulk_create(parsed)
                diff["consumers"] = [old, new]
        if diff:
            model.save()
            audit_append(
                actor=principal.user, action="model.updated", object_type="model", object_id=model.name,
                payload={"changes": diff},
            )
    return model


def _field_value(model: AIModel, field: str) -> Any:
    if field == "owner":
        return model.owner.get_username() if model.owner_id else None
    return getattr(model, field)


def parse_semver(value: Any) -> tuple[int, int, int]:
    if not isinstance(value, str) or not re.match(SEMVER_RE, value):
        raise ValidationFailed.field(
            "version", "must be a semantic version MAJOR.MINOR.PATCH without leading zeros, e.g. 2.1.0"
        )
    major, minor, patch = (int(p) for p in value.split("."))
    return major, minor, patch


def change_type_between(new: tuple[int, int, int], production: tuple[int, int, int] | None) -> str:
    """The kind of change a version is against the current production version (pure)."""
    if production is None:
        return ModelVersion.ChangeType.INITIAL
    if new[0] != production[0]:
        return ModelVersion.ChangeType.MAJOR
    if new[1] != production[1]:
        return ModelVersion.ChangeType.MINOR
    return ModelVersion.ChangeType.PATCH


def _default_provider() -> str:
    return "prometheus" if settings.PROMETHEUS_URL else "push"


def version_register(
    *,
    actor: Any,
    model_name: str,
    version: str,
    artifact_uri: str,
    thresholds: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    status: str = ModelVersion.Status.REGISTERED,
) -> ModelVersion:
    """Register a version. A model's first version may be registered as `production` (the
    incumbent canaries are compared with); every later one starts as `registered`. Only a
    platform engineer may give `metrics` (provider, PromQL overrides); otherwise the version
    gets the deployment's default."""
    if metrics:
        # What judges the version's canaries: never the owner's or its CI token's choice.
        require(actor, Action.CONFIGURE_METRICS)
    semver = parse_semver(version)
    if status not in (ModelVersion.Status.REGISTERED, ModelVersion.Status.PRODUCTION):
        raise ValidationFailed.field("status", "a new version is 'registered', or 'production' for a model's first")
    clean_thresholds = thresholds_with_defaults(thresholds)
    clean_metrics = metrics_with_defaults(metrics, default_provider=_default_provider())
    principal = as_principal(actor)
    with transaction.atomic():
        # Lock the model row: two registrations of the same model are serialised, so the
        # production comparison and the uniqueness check below see a stable register.
        model = AIModel.objects.select_for_update().filter(name=model_name).first()
        if model is None:
            raise NotFound(f"no model named {model_name!r}")
        require(actor, Action.REGISTER_VERSION, model=model)
        if model.versions.filter(version=version).exists():
            raise Conflict(f"{model.name} {version} is already registered")
        production = model.versions.filter(status=ModelVersion.Status.PRODUCTION).first()
        if status == ModelVersion.Status.PRODUCTION and model.versions.exists():
            raise Conflict(
                f"{model.name} already has versions; later versions reach production only through a completed canary"
            )
        if production is not None and semver <= production.semver:
            raise ValidationFailed.field(
                "version", f"must be greater than the production version {production.version}"
            )
        obj = ModelVersion(
            model=model, version=version, major=semver[0], minor=semver[1], patch=semver[2],
            artifact_uri=artifact_uri if isinstance(artifact_uri, str) else "",
            status=status,
            change_type=change_type_between(semver, production.semver if production else None),
            baseline=production,
            thresholds=clean_thresholds,
            metrics=clean_metrics,
            registered_by=principal.user,
        )
        _clean(obj, exclude=["model", "registered_by", "baseline"])
        obj.save()
        audit_append(
            actor=principal.user,
            action="version.registered",
            object_type="model_version",
            object_id=str(obj),
            payload={
                "model": model.name,
                "version": obj.version,
                "artifact_uri": obj.artifact_uri,
                "status": obj.status,
                "change_type": obj.change_type,
                "baseline": production.version if production else None,
                "thresholds": obj.thresholds,
                "metrics": obj.metrics,
                "via_token": principal.token_prefix,
            },
        )
    return obj


def version_update(*, actor: Any, model_name: str, version: str, changes: dict[str, Any]) -> ModelVersion:
    """Change a registered version's artifact or thresholds, or ask to change its metric
    configuration.

    Thresholds are frozen once a canary of the version has started: the canary is judged by the
    numbers it was started with (409). A metric configuration change (platform engineers only)
    is never written at once: it is recorded as a pending MetricConfigChange that AI Governance
    and MRM review (metric_change_review); once approved it governs the version's next canary,
    while a canary already started keeps the configuration frozen on it."""
    allowed = {"artifact_uri", "thresholds", "metrics"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationFailed(
            "unknown or read-only fields", errors={f: ["unknown or read-only field"] for f in sorted(unknown)}
        )
    principal = as_principal(actor)
    if "metrics" in changes:
        require(actor, Action.CONFIGURE_METRICS)
    with transaction.atomic():
        obj = (
            ModelVersion.objects.select_for_update()
            .select_related("model")
            .filter(model__name=model_name, version=version)
            .first()
        )
        if obj is None:
            raise NotFound(f"no version {version!r} of model {model_name!r}")
        require(actor, Action.CHANGE_VERSION, model=obj.model)
        if "thresholds" in changes and obj.config_frozen:
            raise Conflict(
                f"{obj} is {obj.status}: its thresholds were frozen when its canary started; "
                "a change now needs a governance review of the thresholds"
            )
        diff: dict[str, Any] = {}
        if "artifact_uri" in changes:
            if obj.status != ModelVersion.Status.REGISTERED:
                raise Conflict(f"{obj} is {obj.status}: its artifact can no longer change")
            new_uri = changes["artifact_uri"] if isinstance(changes["artifact_uri"], str) else ""
            if new_uri != obj.artifact_uri:
                diff["artifact_uri"] = [obj.artifact_uri, new_uri]
                obj.artifact_uri = new_uri
        if "thresholds" in changes:
            new = thresholds_with_defaults(changes["thresholds"])
            if new != obj.thresholds:
                diff["thresholds"] = [obj.thresholds, new]
                obj.thresholds = new
        proposed_metrics = None
        if "metrics" in changes:
            new = metrics_with_defaults(changes["metrics"], default_provider=obj.metrics.get("provider", "push"))
            if new != obj.metrics:
                proposed_metrics = new
        _clean(obj, exclude=["model", "registered_by", "baseline"])
        if proposed_metrics is not None:
            _metric_change_record(obj, proposed=proposed_metrics, principal=principal)
        if diff:
            obj.save(update_fields=["artifact_uri", "thresholds", "metrics"])
            audit_append(
                actor=principal.user, action="version.updated", object_type="model_version",
                object_id=str(obj), payload={"changes": diff, "via_token": principal.token_prefix},
            )
    return obj


def _metric_change_record(version: ModelVersion, *, proposed: dict[str, Any], principal: Any) -> MetricConfigChange:
    """Record a pending metric configuration change of a (locked) version; one at a time."""
    if version.metric_changes.filter(status=MetricConfigChange.Status.PENDING).exists():
        raise Conflict(f"{version} already has a metric configuration change under review")
    change = MetricConfigChange.objects.create(
        version=version, current=version.metrics, proposed=proposed, requested_by=principal.user,
        requested_at=timezone.now(),
    )
    audit_append(
        actor=principal.user, action="version.metrics_change_requested", object_type="model_version",
        object_id=str(version),
        payload={"request": change.pk, "current": change.current, "proposed": proposed,
                 "via_token": principal.token_prefix},
    )
    return change


def metric_change_review(*, actor: Any, change_id: int, approve: bool, note: str = "") -> MetricConfigChange:
    """One reviewer's decision on a metric configuration change. AI Governance and MRM each
    approve once (two different people, neither the requester); with both approvals the change
    is written on the version (its next canary uses it; a started canary keeps its frozen copy).
    One rejection discards it."""
    principal = as_principal(actor)
    if principal.is_service_account:
        raise PermissionRefused("service accounts never review a metric configuration change")
    require(principal, Action.REVIEW_THRESHOLD_CHANGE)
    user = principal.user
    now = timezone.now()
    with transaction.atomic():
        change = MetricConfigChange.objects.select_for_update().filter(pk=change_id).first()
        if change is None:
            raise NotFound(f"no metric configuration change #{change_id}")
        if change.status != MetricConfigChange.Status.PENDING:
            raise Conflict(f"metric configuration change #{change.pk} is {change.status}")
        if change.requested_by_id == user.pk:
            raise PermissionRefused("the requester cannot review their own metric configuration change")
        side = review_side(change, user_id=user.pk, roles=roles_of(user), pending=True)
        if side is None:
            raise Conflict(f"metric configuration change #{change.pk} needs no further review from you")
        note = note.strip() if isinstance(note, str) else ""
        if not approve and len(note) < 10:
            raise ValidationFailed.field("note", "say why the change is rejected (at least 10 characters)")
        fields: dict[str, Any] = {f"{side}_by": user, f"{side}_at": now,
                                  "decision_note": "\n".join(filter(None, [change.decision_note, note]))}
        if not approve:
            fields["status"] = MetricConfigChange.Status.REJECTED
        elif (change.governance_by_id or side == "governance") and (change.mrm_by_id or side == "mrm"):
            fields["status"] = MetricConfigChange.Status.APPLIED
        for name, value in fields.items():
            setattr(change, name, value)
        change.save(update_fields=list(fields))
        version = ModelVersion.objects.select_for_update().get(pk=change.version_id)
        audit_append(
            actor=user, action=f"version.metrics_change_{'approved' if approve else 'rejected'}",
            object_type="model_version", object_id=str(version),
            payload={"request": change.pk, "as": side, "status": change.status, "note": note},
        )
        if change.status == MetricConfigChange.Status.APPLIED:
            version.metrics = change.proposed
            version.save(update_fields=["metrics"])
            audit_append(
                actor=None, action="version.metrics_change_applied", object_type="model_version",
                object_id=str(version), payload={"request": change.pk, "from": change.current, "to": change.proposed},
            )
    return change


def observation_push(*, actor: Any, data: dict[str, Any], now: Any = None) -> Observation:
    """Store one window pushed for a version of the register (monitoring's push provider reads
    it). The caller must be allowed to push for the model; a model outside a token's scope
    answers as an unknown one does (404), so a token learns nothing of the models it may not see."""
    model = AIModel.objects.filter(name=data["model"]).first()
    if model is None or not may_see_model(actor, model.pk):
        raise NotFound(f"no model named {data['model']!r}")
    require(actor, Action.PUSH_OBSERVATIONS, model=model)
    if not model.versions.filter(version=data["version"]).exists():
        raise ValidationFailed.field("version", f"{model.name} has no version {data['version']!r}")
    return observation_record(data=data, now=now)


def version_transition(
    *, version: ModelVersion, to: str, actor: Any, canary_id: int | None, reason: str,
    action: str = "version.status_changed", extra: dict[str, Any] | None = None,
) -> ModelVersion:
    """Move a version to `to` (table: releases.register.states) and audit it, in the caller's
    transaction; the caller holds the lock that orders the move (its canary's row). A conditional
    UPDATE, so django-auditlog's field history is not written twice for one move."""
    current = ModelVersion.objects.filter(pk=version.pk).values_list("status", flat=True).get()
    if not states.may_become(current, to):
        raise Conflict(f"{version} is {current}; it cannot become {to}")
    if not ModelVersion.objects.filter(pk=version.pk, status=current).update(status=to):
        raise Conflict(f"{version} changed status meanwhile; try again")
    version.status = to
    audit_append(
        actor=as_principal(actor).user if actor is not None else None, action=action, object_type="model_version",
        object_id=str(version), payload={"from": current, "to": to, "canary": canary_id, "reason": reason,
                                         **(extra or {})},
    )
    return version


def version_flag_escalated(*, version: ModelVersion, at: Any) -> None:
    """Mark the version as sent to the model risk committee (the escalation record and its audit
    event are governance.incidents'; this flag is the register's history of the version)."""
    ModelVersion.objects.filter(pk=version.pk).update(committee_escalated_at=at)
    version.committee_escalated_at = at


__all__ = [
    "RiskTier",
    "change_type_between",
    "model_register",
    "model_update",
    "observation_push",
    "parse_semver",
    "version_flag_escalated",
    "version_register",
    "version_transition",
    "version_update",
]
