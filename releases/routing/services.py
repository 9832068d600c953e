"""Routing's writes: carrying a split to a router and keeping the record of it, and the router
registry platform engineers keep.

The push is where a decision becomes traffic, so it is recorded and verified:

- every push is a `RouterPush` row (requested split, the split the router reads back, duration,
  attempts, error). A transition's push is written `queued` in the transaction that changed the
  split (`push_queue`), taken by the worker that carries it out (`pushing`) and completed after
  the last attempt (`applied`, `failed`, `superseded`); a push no worker took in time, or whose
  worker died mid-push, is marked `lost` (`pushes_mark_lost`), so a lost push is never silent;
- transient router errors are retried *inside* the call with a short doubling backoff, up to a
  deadline: for a rollback (0 %) the 2-minute SLO counted from the transition, otherwise
  PUSH_DEADLINE_S. Retrying in-call keeps one record per push and lets the deadline be exact;
- a push is confirmed only when `read_back` returns the requested split (or a newer one);
- a rollback that cannot be confirmed at 0 % by its deadline opens a P1 incident naming the
  manual override; the periodic router reconciliation also opens it if a worker died mid-push;
- `router_reconcile` compares a canary's intended split with what its router applies and pushes
  again on drift (a RouterPush with reason "reconcile").

Routing knows splits, not canaries: what to push comes as a `PushOrder` from the canary's side
(releases.canaries.loop).

The registry: a platform engineer registers which data plane a router kind talks to
(`router_for` prefers the enabled config of a kind over settings). As releases.register.services:
access first, validate, change and audit in one transaction. A registered config chooses only the
options releases.routing.options allows for its kind; programs, files and local URLs come from
the deployment's settings, and a stored row asking for more is refused at use. The signing
secret is write-only. It
is stored, and handed to the router class to prove the configuration can be built, but it never
reaches an audit payload, a log line or an error message: those only ever say whether a secret
was set.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from canaryhub.errors import NotFound, ValidationFailed
from governance.access.permissions import Action, as_principal, require
from governance.audit.services import audit_append
from governance.incidents.models import Incident
from monitoring.notifications.services import notification_record
from monitoring.services import incident_raise
from releases.routing import options as router_options
from releases.routing.models import RouterConfig, RouterPush
from releases.routing.routers import (
    PermanentRouterError,
    Router,
    RouterError,
    Split,
    StaleSplitError,
    get_router,
)

logger = logging.getLogger(__name__)

ROLLBACK_SLO = timedelta(minutes=2)
PUSH_DEADLINE_S = 60.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0

# What the audit trail says instead of the secret.
SECRET_SET = "***set***"
SECRET_UNCHANGED = "unchanged"
SECRET_NONE = "not set"

AUDITED_FIELDS = ("kind", "target", "options", "enabled")

def router_config_save(
    *,
    actor: Any,
    kind: str,
    name: str,
    target: str,
    options: dict[str, Any] | None = None,
    secret: str | None = None,
    enabled: bool = True,
) -> RouterConfig:
    """Register a router config, or change the one of that name. A blank `secret` keeps the
    stored one; the configuration must build a router of its kind."""
    require(actor, Action.MANAGE_ROUTERS)
    principal = as_principal(actor)
    options = _options(kind, options)
    target = (target or "").strip()
    with transaction.atomic():
        # The row lock serialises two edits of one config; the enabled-per-kind check below is
        # backed by the one_enabled_router_per_kind constraint for configs of other names.
        config = RouterConfig.objects.select_for_update().filter(name=name).first()
        created = config is None
        if config is None:
            config = RouterConfig(name=name, created_by=principal.user)
        before = {f: getattr(config, f) for f in AUDITED_FIELDS} if not created else {}
        had_secret = bool(config.secret)
        config.kind, config.target, config.options, config.enabled = kind, target, options, enabled
        if secret:
            config.secret = secret
        _clean(config)
        _check_builds(config)
        if enabled and RouterConfig.objects.filter(kind=kind, enabled=True).exclude(pk=config.pk).exists():
            raise ValidationFailed.field(
                "enabled", f"another {kind} router is enabled; disable it first (a canary names only the kind)"
            )
        try:
            with transaction.atomic():
                config.save()
        except IntegrityError as exc:  # a concurrent save enabled another config of the kind
            raise ValidationFailed.field("enabled", f"another {kind} router is enabled") from exc
        marker = SECRET_SET if secret else (SECRET_UNCHANGED if had_secret else SECRET_NONE)
        if created:
            action = "router.registered"
            payload: dict[str, Any] = {**{f: getattr(config, f) for f in AUDITED_FIELDS}, "secret": marker}
        else:
            action = "router.updated"
            after = {f: getattr(config, f) for f in AUDITED_FIELDS}
            diff = {f: [before[f], after[f]] for f in AUDITED_FIELDS if before[f] != after[f]}
            payload = {"changes": diff, "secret": marker}
        audit_append(actor=principal.user, action=action, object_type="router", object_id=config.name, payload=payload)
    logger.info("%s %s (%s) by %s; secret %s", action, config.name, config.kind, principal.user, marker)
    return config


def router_config_disable(*, actor: Any, name: str) -> RouterConfig:
    """Stop using a config: its kind falls back to settings.CANARYHUB_ROUTERS. Idempotent."""
    require(actor, Action.MANAGE_ROUTERS)
    principal = as_principal(actor)
    with transaction.atomic():
        config = RouterConfig.objects.select_for_update().filter(name=name).first()
        if config is None:
            raise NotFound(f"no router config named {name!r}")
        if not config.enabled:
            return config
        config.enabled = False
        config.save(update_fields=["enabled", "updated_at"])
        audit_append(
            actor=principal.user, action="router.disabled", object_type="router", object_id=config.name,
            payload={"kind": config.kind},
        )
    logger.info("router.disabled %s (%s) by %s", config.name, config.kind, principal.user)
    return config


def _options(kind: str, options: Any) -> dict[str, Any]:
    try:
        return router_options.clean_options(kind, options)
    except router_options.OptionRefused as exc:
        raise ValidationFailed.field(exc.field, exc.message) from exc


def registered_kwargs(config: RouterConfig) -> dict[str, Any]:
    """The router class's keyword arguments for a registered config: the deployment's settings of
    its kind with the config's allow-listed options, target and secret. A row that asks for
    anything else (one stored before the allow-list, or edited in the database) is refused with
    a PermanentRouterError naming the field, never obeyed."""
    try:
        return router_options.router_kwargs(
            kind=config.kind, target=config.target, secret=config.secret, options=config.options,
            deployment=settings.CANARYHUB_ROUTERS.get(config.kind, {}), roots=settings.CANARYHUB_ROUTER_TARGET_DIRS,
        )
    except router_options.OptionRefused as exc:
        raise PermanentRouterError(
            f"router config {config.name} is refused: {exc.field}: {_without_secret(exc.message, config.secret)}"
        ) from exc


def router_config_problem(config: RouterConfig) -> str:
    """Why a stored config cannot be used ("" when it can): shown on the Routers page."""
    try:
        registered_kwargs(config)
    except PermanentRouterError as exc:
        return str(exc)
    return ""


def _clean(config: RouterConfig) -> None:
    try:
        # `secret` is excluded so that no validator message can ever quote it.
        config.full_clean(exclude=["created_by", "secret"], validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        errors = {field: [str(m) for m in messages] for field, messages in exc.message_dict.items()}
        raise ValidationFailed("invalid router config", errors=errors) from exc
    if len(config.secret) > RouterConfig._meta.get_field("secret").max_length:
        raise ValidationFailed.field("secret", "is too long (at most 500 characters)")


def _check_builds(config: RouterConfig) -> None:
    """Build the router as router_for will, so that a config which cannot work is refused here
    rather than at the first push of a canary. (The file and nginx routers create their folder.)"""
    try:
        kwargs = router_options.router_kwargs(
            kind=config.kind, target=config.target, secret=config.secret, options=config.options,
            deployment=settings.CANARYHUB_ROUTERS.get(config.kind, {}), roots=settings.CANARYHUB_ROUTER_TARGET_DIRS,
        )
    except router_options.OptionRefused as exc:
        raise ValidationFailed.field(exc.field, _without_secret(exc.message, config.secret)) from exc
    try:
        get_router(config.kind, **kwargs)
    except RouterError as exc:
        raise ValidationFailed.field(_field_of(config, str(exc)), _without_secret(str(exc), config.secret)) from exc
    except (TypeError, ValueError) as exc:
        raise ValidationFailed.field("options", _without_secret(str(exc), config.secret)) from exc


def _field_of(config: RouterConfig, message: str) -> str:
    if "secret" in message:
        return "secret"
    if "bad configuration" in message or (config.kind == RouterConfig.Kind.NGINX and "header" in message):
        return "options"
    return "target"


def _without_secret(message: str, secret: str) -> str:
    # The routers promise not to quote it; this is the belt to their braces.
    return message.replace(secret, "***") if secret else message


# --- pushes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushOrder:
    """A split to carry to a canary's router, with what the record and the incident need."""

    canary_id: int
    router: str  # the router kind the canary names
    split: Split
    stopping: bool  # 0 % for a canary that was rolled back or aborted: the rollback SLO applies
    ended_at: datetime | None
    label: str  # how incidents and logs name the canary, e.g. "canary #7 (support-bot@1.2.0)"


def router_for(kind: str) -> Router:
    """The router for a canary's `router` kind: the enabled RouterConfig of that kind, registered
    by a platform engineer in the UI, else the kind's entry in settings.CANARYHUB_ROUTERS."""
    registered = RouterConfig.objects.filter(kind=kind, enabled=True).first()
    if registered is not None:
        return get_router(kind, **registered_kwargs(registered))
    config = dict(settings.CANARYHUB_ROUTERS.get(kind, {}))
    if kind == "file":
        config = {"path_dir": Path(config.get("path_dir", settings.VAR_DIR / "router"))}
    return get_router(kind, **config)


def _deadline(order: PushOrder, now: datetime) -> datetime:
    if order.stopping:
        return (order.ended_at or now) + ROLLBACK_SLO
    return now + timedelta(seconds=getattr(settings, "ROUTER_PUSH_DEADLINE_S", PUSH_DEADLINE_S))


def push_and_record(
    order: PushOrder, *, reason: str, sleep: Any = time.sleep, router: Router | None = None,
) -> RouterPush:
    """Push the order's split, retrying transient errors until the deadline, and keep the record.
    Returns the RouterPush. Never raises a RouterError: the record is the outcome."""
    split = order.split
    started = timezone.now()
    deadline = _deadline(order, started)
    push = _claim_queued(order, started=started) or RouterPush.objects.create(
        canary_id=order.canary_id, router=order.router, generation=split.generation, requested=split.to_dict(),
        reason=reason, status=RouterPush.Status.PUSHING, queued_at=started, started_at=started,
    )
    t0 = time.perf_counter()
    attempts, error, applied, ok = 0, "", None, False
    backoff = BACKOFF_FIRST_S
    while True:
        attempts += 1
        try:
            router = router or router_for(order.router)
            router.apply(split)
            seen = router.read_back(split.model)
            applied = seen.to_dict() if seen is not None else None
            ok = seen is not None and seen.order >= split.order and (seen.order > split.order or seen == split)
            error = "" if ok else f"read back {applied} instead of the requested split"
            if ok:
                break
            transient = True
        except StaleSplitError as exc:
            # A newer split already owns the router: this push has nothing left to do.
            error, transient = f"stale: {exc}", False
        except RouterError as exc:
            error, transient = str(exc), exc.transient
        except Exception as exc:  # a bug in an adapter must still leave a record and reach the incident
            logger.exception("router %s raised unexpectedly for canary %s", order.router, order.canary_id)
            error, transient = f"{type(exc).__name__}: {exc}", True
        remaining = (deadline - timezone.now()).total_seconds()
        if not transient or remaining <= backoff:
            break
        sleep(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX_S)
    finished = timezone.now()
    status = (RouterPush.Status.APPLIED if ok else
              RouterPush.Status.SUPERSEDED if error.startswith("stale:") else RouterPush.Status.FAILED)
    push_transition(push.pk, frm=RouterPush.Status.PUSHING, to=status, applied=applied, finished_at=finished,
                    duration_ms=(time.perf_counter() - t0) * 1000, attempts=attempts, ok=ok, error=error[:4000])
    push.refresh_from_db()
    if ok:
        logger.info("pushed %s%% of %s to router %s (%s attempt(s))", split.percent, split.model, order.router,
                    attempts)
    else:
        logger.error("push of canary %s generation %s failed: %s", order.canary_id, split.generation, error)
        if order.stopping and not error.startswith("stale:"):
            rollback_unconfirmed(order, push=push, router=router)
    return push


def push_transition(pk: int, *, frm: str, to: str, **fields: Any) -> bool:
    """Move one push from status `frm` to `to` (with its other fields), only if it is still at
    `frm`: the conditional update makes each move happen once however many processes race for it
    (a worker taking a queued push and a sweeper marking it lost). Whether this call moved it."""
    return bool(RouterPush.objects.filter(pk=pk, status=frm).update(status=to, **fields))


def push_queue(*, canary_id: int, router: str, split: Split, reason: str = "transition") -> RouterPush:
    """Record a push as queued, in the caller's transaction (the one that changed the split): if
    the message carrying it is lost, the row still says a push was due and never ran."""
    return RouterPush.objects.create(
        canary_id=canary_id, router=router, generation=split.generation, requested=split.to_dict(),
        reason=reason, status=RouterPush.Status.QUEUED, queued_at=timezone.now(),
    )


def _claim_queued(order: PushOrder, *, started: datetime) -> RouterPush | None:
    """Take the oldest queued row of the order's generation for this push (the one written when
    it was queued). The conditional update makes the claim exclusive: a row the sweeper marked
    lost meanwhile, or another worker took, is not taken again."""
    for pk in (RouterPush.objects.filter(canary_id=order.canary_id, generation=order.split.generation,
                                         status=RouterPush.Status.QUEUED)
               .order_by("queued_at", "id").values_list("pk", flat=True)[:3]):
        if push_transition(pk, frm=RouterPush.Status.QUEUED, to=RouterPush.Status.PUSHING, started_at=started,
                           requested=order.split.to_dict()):
            return RouterPush.objects.get(pk=pk)
    return None


def push_superseded(*, canary_id: int, generation: int) -> int:
    """A queued push whose generation a newer split replaced before any worker took it: nothing
    to carry, said so on its row. Returns how many rows were closed."""
    closed = 0
    for pk in RouterPush.objects.filter(canary_id=canary_id, generation=generation,
                                        status=RouterPush.Status.QUEUED).values_list("pk", flat=True):
        closed += push_transition(
            pk, frm=RouterPush.Status.QUEUED, to=RouterPush.Status.SUPERSEDED, finished_at=timezone.now(),
            error=f"superseded before it ran: generation {generation} is no longer the canary's split")
    return closed


def pushes_mark_lost(*, now: datetime, queued_limit_s: float, running_limit_s: float) -> list[RouterPush]:
    """Mark `lost` every push queued more than `queued_limit_s` ago that no worker took, and every
    push taken more than `running_limit_s` ago (past the task's hard time limit) that never
    finished: its worker died or its message was dropped. Each row is marked by one caller only
    (conditional update), so any number of sweepers at once report each lost push once.
    Returns the rows this call marked."""
    marked: list[RouterPush] = []
    candidates = RouterPush.objects.filter(
        Q(status=RouterPush.Status.QUEUED, queued_at__lt=now - timedelta(seconds=queued_limit_s))
        | Q(status=RouterPush.Status.PUSHING, finished_at__isnull=True,
            started_at__lt=now - timedelta(seconds=running_limit_s))
    ).order_by("queued_at", "id")
    for push in candidates[:500]:
        if push.status == RouterPush.Status.QUEUED:
            error = (f"lost: queued at {push.queued_at.isoformat()} and not taken by a worker "
                     f"within {queued_limit_s:.0f} s")
        else:
            error = f"lost: the worker that took it did not finish within {running_limit_s:.0f} s"
        if push_transition(push.pk, frm=push.status, to=RouterPush.Status.LOST, finished_at=now, ok=False,
                           error=error):
            push.status, push.finished_at, push.error = RouterPush.Status.LOST, now, error
            marked.append(push)
            logger.error("router push %s of canary %s (generation %s) %s", push.pk, push.canary_id,
                         push.generation, error)
    return marked


def rollback_unconfirmed(order: PushOrder, *, push: RouterPush, router: Router | None) -> None:
    """Open the P1 incident (once per canary) telling on-call how to force 0 % by hand."""
    with transaction.atomic():
        if Incident.objects.filter(canary_id=order.canary_id, kind=Incident.Kind.ROLLBACK_UNCONFIRMED).exists():
            return
        try:
            override = (router or router_for(order.router)).manual_override(order.split.model)
        except RouterError:
            override = f"set the {order.router} router's canary weight for {order.split.model} to 0% by hand"
        incident_raise(
            severity=Incident.Severity.P1, kind=Incident.Kind.ROLLBACK_UNCONFIRMED, canary_id=order.canary_id,
            summary=f"Rollback of {order.label} not confirmed at 0% within 2 minutes. Manual override: {override}",
            details={"push": push.pk, "router": order.router, "error": push.error[:1000],
                     "manual_override": override, "attempts": push.attempts},
        )


def rollback_confirmed_late(order: PushOrder, *, now: datetime | None = None) -> Incident | None:
    """A rollback whose "not confirmed at 0 %" P1 is open is now confirmed (the reconciler read 0 %
    back, or its push applied): the incident records when, the audit trail says so, and on-call and
    platform hear that the manual override is no longer needed. The incident stays open: its root
    cause is still owed. Once per incident; None when there is nothing to record."""
    now = now or timezone.now()
    with transaction.atomic():
        incident = (Incident.objects.select_for_update()
                    .filter(canary_id=order.canary_id, kind=Incident.Kind.ROLLBACK_UNCONFIRMED).first())
        if incident is None or incident.details.get("confirmed_at"):
            return None
        incident.details = {**incident.details, "confirmed_at": now.isoformat()}
        incident.save(update_fields=["details"])
        record = {"incident": incident.pk, "canary": order.canary_id, "router": order.router,
                  "confirmed_at": now.isoformat()}
        audit_append(actor=None, action="incident.rollback_confirmed", object_type="incident",
                     object_id=incident.pk, payload=record)
        notification_record(kind="incident.rollback_confirmed", canary_id=order.canary_id, payload=record,
                            once_key=f"rollback-confirmed-{incident.pk}")
    return incident


def router_reconcile(order: PushOrder, *, sleep: Any = time.sleep) -> str:
    """Compare one canary's intended split with its router and push again on drift: "newer" (a
    newer split owns the router), "in-sync", "corrected" or "drift"."""
    intended = order.split
    try:
        router: Router | None = router_for(order.router)
        actual = router.read_back(intended.model)  # type: ignore[union-attr]
    except RouterError as exc:
        actual, router = None, None
        logger.warning("reconcile: cannot read router %s for %s: %s", order.router, intended.model, exc)
    if actual is not None and actual.order > intended.order:
        return "newer"  # a newer canary (or generation) owns the router; nothing to correct
    if actual == intended:
        if order.stopping:
            _check_overdue_rollback(order, confirmed=True)
            rollback_confirmed_late(order)
        return "in-sync"
    logger.warning(
        "router drift for %s: intends %s, router has %s", intended.model, intended.to_dict(),
        actual.to_dict() if actual else None,
    )
    push = push_and_record(order, reason="reconcile", sleep=sleep, router=router)
    if order.stopping:
        _check_overdue_rollback(order, confirmed=push.ok)
        if push.ok:
            rollback_confirmed_late(order)
    return "corrected" if push.ok else "drift"


def _check_overdue_rollback(order: PushOrder, *, confirmed: bool) -> None:
    # A worker that died mid-push leaves no incident behind: the reconciler notices the overdue
    # rollback whose last push never confirmed.
    if confirmed or order.ended_at is None or timezone.now() < order.ended_at + ROLLBACK_SLO:
        return
    last = RouterPush.objects.filter(canary_id=order.canary_id).order_by("-queued_at", "-id").first()
    if last is not None:
        rollback_unconfirmed(order, push=last, router=None)
