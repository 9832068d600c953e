"""The notification outbox and its delivery.

Recording (in the caller's transaction): `notification_record` writes the outbox row and, from
the table of who hears what (monitoring.notifications.recipients), one NotificationDelivery per
recipient and channel. The people of a canary (owner, consumers, rollback contact, outstanding
signers, requester) are resolved by the layer that knows canaries, which registers its resolver
with `provide` (releases does, in its AppConfig.ready): monitoring never imports it.

Delivering (the sender task, on its own "notifications" queue): `deliveries_send_due` claims due
rows with SELECT … FOR UPDATE SKIP LOCKED (a claim left by a worker that died is taken again
after NOTIFY_CLAIM_TIMEOUT_S), sends each outside the claim's transaction, and stamps `sent_at`,
attempts, the latency and the last error; a transient failure is retried with exponential
backoff and jitter until the row's deadline, then dead-lettered; a permanent one (a 4xx, a
refused address) is dead-lettered at once. Dead letters are counted on /metrics and listed for
platform, who can retry them.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Iterable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from canaryhub.canonical import normalise_json
from canaryhub.errors import NotFound, ValidationFailed
from governance.access.permissions import Action, as_principal, require
from governance.audit.services import audit_append
from monitoring.models import NotificationDelivery, NotificationEvent, NotificationPreference
from monitoring.notifications import channels
from monitoring.notifications.messages import render
from monitoring.notifications.recipients import Contact, Target, contact_from_text, rule_for, targets

logger = logging.getLogger(__name__)

Status = NotificationDelivery.Status
Channel = NotificationDelivery.Channel
GROUP_ROLES = ("platform", "mrm", "ai_governance", "on_call")

Resolver = Callable[[int | None, frozenset[str], dict[str, Any]], list[Contact]]
_resolvers: list[Resolver] = []


def provide(resolver: Resolver) -> None:
    """Register `resolver(canary_id, roles, payload) -> contacts` for the roles an upper layer knows."""
    if resolver not in _resolvers:
        _resolvers.append(resolver)


# --- recording ----------------------------------------------------------------------------------


def notification_record(
    *, kind: str, canary_id: int | None, payload: dict[str, Any], once_key: str | None = None,
    now: datetime | None = None,
) -> NotificationEvent | None:
    """One outbox row and its deliveries, in the caller's transaction. With `once_key`, a second
    recording of the same fact does nothing and returns None."""
    rule = rule_for(kind)
    if once_key and NotificationEvent.objects.filter(once_key=once_key).exists():
        return None
    event = NotificationEvent.objects.create(kind=kind, canary_id=canary_id, audience=list(rule.audience),
                                             payload=normalise_json(payload), once_key=once_key)
    deliveries_fan_out(event, now=now)
    return event


def notifications_store(events: Iterable[NotificationEvent], *, now: datetime | None = None) -> None:
    """Store rows built elsewhere (the control loop's early warnings), each with its deliveries."""
    for event in events:
        event.audience = list(rule_for(event.kind).audience)
        event.payload = normalise_json(event.payload)
        event.save()
        deliveries_fan_out(event, now=now)


def _group_contacts(roles: frozenset[str]) -> list[Contact]:
    wanted = [r for r in GROUP_ROLES if r in roles]
    out: list[Contact] = []
    if wanted:
        users = get_user_model().objects.filter(is_active=True, groups__name__in=wanted).values_list(
            "pk", "email", "groups__name")
        out += [Contact(role=group, user_id=pk, email=email or "") for pk, email, group in users if group in wanted]
    if "on_call" in roles and settings.NOTIFY_ON_CALL_ADDRESS:
        c = contact_from_text("on_call", settings.NOTIFY_ON_CALL_ADDRESS)
        if c:
            out.append(c)
    if "model_risk_committee" in roles and settings.NOTIFY_COMMITTEE_ADDRESS:
        out.append(Contact(role="model_risk_committee", channel="email", address=settings.NOTIFY_COMMITTEE_ADDRESS))
    return out


def contacts_for(kind: str, canary_id: int | None, payload: dict[str, Any]) -> list[Contact]:
    roles = frozenset(rule_for(kind).audience)
    if not roles:
        return []
    contacts = _group_contacts(roles)
    for resolver in _resolvers:
        contacts += resolver(canary_id, roles, payload)
    return contacts


def _key(event_id: int, channel: str, address: str) -> str:
    return hashlib.sha256(f"{event_id}\n{channel}\n{address}".encode()).hexdigest()[:40]


def deliveries_fan_out(event: NotificationEvent, *, now: datetime | None = None) -> list[NotificationDelivery]:
    now = now or timezone.now()
    rule = rule_for(event.kind)
    contacts = contacts_for(event.kind, event.canary_id, event.payload)
    user_ids = {c.user_id for c in contacts if c.user_id is not None}
    prefs = {p.user_id: p for p in NotificationPreference.objects.filter(user_id__in=user_ids)}
    chosen = targets(rule, contacts, email_off=frozenset(u for u, p in prefs.items() if not p.email),
                     pager_key=settings.NOTIFY_PAGERDUTY_ROUTING_KEY, team_slack=settings.NOTIFY_SLACK_WEBHOOK_URL)
    rows = []
    for t in chosen:
        due = now
        pref = prefs.get(t.user_id) if t.user_id is not None else None
        if t.channel != Channel.FEED and not t.page and pref is not None:
            due = quiet_until(now, pref.quiet_start, pref.quiet_end, tz=ZoneInfo(settings.NOTIFY_TIME_ZONE)) or now
        feed = t.channel == Channel.FEED
        rows.append(NotificationDelivery(
            event=event, channel=t.channel, address=t.address[:500], user_id=t.user_id, roles=list(t.roles),
            page=t.page, idempotency_key=_key(event.pk, t.channel, t.address), next_attempt_at=due,
            deadline_at=due + timedelta(seconds=settings.NOTIFY_DEADLINE_S),
            status=Status.SENT if feed else Status.PENDING, sent_at=now if feed else None,
            latency_s=0.0 if feed else None,
        ))
    return NotificationDelivery.objects.bulk_create(rows)


def quiet_until(now: datetime, start: time | None, end: time | None, *, tz: ZoneInfo) -> datetime | None:
    """Pure: the end of the quiet hours `now` falls in (local time `tz`), or None outside them."""
    if start is None or end is None or start == end:
        return None
    local = now.astimezone(tz)
    t = local.time()
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    until = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if until <= local:
        until += timedelta(days=1)
    return until.astimezone(now.tzinfo)


# --- delivering ---------------------------------------------------------------------------------


def retry_delay(attempts: int, *, base_s: float, cap_s: float, rand: Callable[[], float] = random.random) -> float:
    """Pure: exponential backoff with jitter — between half and all of min(cap, base·2^(n-1))."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempts - 1))
    return ceiling * (0.5 + 0.5 * rand())


def deliveries_transition(ids: list[int], *, to: str, fields: dict[str, Any], expect: Q | None = None) -> int:
    """Move deliveries to `to` (the one place their status changes). `expect` narrows the rows
    (a stamp applies only while the row is still this sender's claim)."""
    qs = NotificationDelivery.objects.filter(pk__in=ids)
    if expect is not None:
        qs = qs.filter(expect)
    return qs.update(status=to, **fields)


def deliveries_claim(*, now: datetime, limit: int = 50) -> list[tuple[int, datetime]]:
    """Claim up to `limit` due deliveries (pages first): pending ones whose time has come, and
    claims older than NOTIFY_CLAIM_TIMEOUT_S (their worker vanished). Rows another sender holds
    locked are skipped, not waited for."""
    stale = now - timedelta(seconds=settings.NOTIFY_CLAIM_TIMEOUT_S)
    with transaction.atomic():
        qs = NotificationDelivery.objects.filter(
            Q(status=Status.PENDING, next_attempt_at__lte=now) | Q(status=Status.SENDING, claimed_at__lt=stale)
        ).exclude(channel=Channel.FEED).order_by("-page", "next_attempt_at", "id")
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True)
        ids = list(qs.values_list("pk", flat=True)[:limit])
        if ids:
            deliveries_transition(ids, to=Status.SENDING, fields={"claimed_at": now})
    return [(pk, now) for pk in ids]


def _dispatch(delivery: NotificationDelivery) -> None:
    event = delivery.event
    message = render(kind=event.kind, canary_id=event.canary_id, payload=event.payload,
                     base_url=settings.NOTIFY_BASE_URL)
    key = delivery.idempotency_key
    if delivery.channel == Channel.EMAIL:
        channels.send_email(message, to=delivery.address, key=key)
    elif delivery.channel == Channel.SLACK:
        channels.send_slack(message, url=delivery.address, key=key,
                            trusted=delivery.address == settings.NOTIFY_SLACK_WEBHOOK_URL)
    elif delivery.channel == Channel.PAGERDUTY:
        channels.send_pagerduty(message, routing_key=delivery.address, severity=rule_for(event.kind).severity)
    elif delivery.channel == Channel.WEBHOOK:
        channels.send_webhook(message, url=delivery.address, key=key, created_at=event.created_at)
    else:
        raise channels.PermanentError(f"unknown channel {delivery.channel}")


def delivery_send(delivery_id: int, *, claimed_at: datetime) -> str:
    """Send one claimed delivery and stamp the outcome; returns the status it ends in."""
    delivery = NotificationDelivery.objects.select_related("event").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != Status.SENDING or delivery.claimed_at != claimed_at:
        return "skipped"  # another sender took it over
    mine = Q(status=Status.SENDING, claimed_at=claimed_at)
    attempts = delivery.attempts + 1
    try:
        _dispatch(delivery)
    except Exception as exc:  # any failure is recorded on the row; only a transient one is retried
        now = timezone.now()
        permanent = isinstance(exc, channels.PermanentError)
        error = f"{exc.__class__.__name__}: {exc}"[:2000]
        if permanent or now >= delivery.deadline_at:
            deliveries_transition([delivery_id], to=Status.DEAD, expect=mine,
                                  fields={"attempts": attempts, "last_error": error, "claimed_at": None})
            logger.warning("notification delivery %s dead-lettered: %s", delivery_id, error)
            return Status.DEAD
        delay = retry_delay(attempts, base_s=settings.NOTIFY_RETRY_BASE_S, cap_s=settings.NOTIFY_RETRY_CAP_S)
        deliveries_transition([delivery_id], to=Status.PENDING, expect=mine, fields={
            "attempts": attempts, "last_error": error, "claimed_at": None,
            "next_attempt_at": min(now + timedelta(seconds=delay), delivery.deadline_at)})
        return Status.PENDING
    now = timezone.now()
    deliveries_transition([delivery_id], to=Status.SENT, expect=mine, fields={
        "attempts": attempts, "sent_at": now, "claimed_at": None,
        "latency_s": max(0.0, (now - delivery.event.created_at).total_seconds())})
    NotificationEvent.objects.filter(pk=delivery.event_id).update(sent_at=now)
    return Status.SENT


def deliveries_send_due(*, limit: int = 50, now: datetime | None = None) -> dict[str, int]:
    """One round of the sender: claim, send, stamp. Returns counts by outcome."""
    counts: dict[str, int] = {}
    for pk, claimed_at in deliveries_claim(now=now or timezone.now(), limit=limit):
        outcome = delivery_send(pk, claimed_at=claimed_at)
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def delivery_retry_now(*, actor: Any, delivery_id: int, now: datetime | None = None) -> NotificationDelivery:
    """Platform's "retry now": a dead-lettered or waiting delivery is due again at once, with a
    fresh deadline. Audited."""
    now = now or timezone.now()
    require(actor, Action.MANAGE_NOTIFICATIONS)
    with transaction.atomic():
        delivery = NotificationDelivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None or delivery.channel == Channel.FEED:
            raise NotFound(f"no outbox delivery #{delivery_id}")
        if delivery.status not in (Status.DEAD, Status.PENDING):
            raise ValidationFailed.field("delivery", f"delivery #{delivery_id} is {delivery.status}")
        previous = delivery.status
        deliveries_transition([delivery.pk], to=Status.PENDING, fields={
            "next_attempt_at": now, "deadline_at": now + timedelta(seconds=settings.NOTIFY_DEADLINE_S)})
        audit_append(actor=as_principal(actor).user, action="notification.retried", object_type="notification",
                     object_id=delivery.event_id, payload={"delivery": delivery.pk, "channel": delivery.channel,
                                                           "address": delivery.address, "from": previous,
                                                           "attempts": delivery.attempts})
    delivery.refresh_from_db()
    return delivery


# --- alerts from Alertmanager ----------------------------------------------------------------------


def alerts_record(*, alerts: list[dict[str, Any]]) -> int:
    """Prometheus alerts received from Alertmanager, each told to on-call and platform once per
    alert, start and status. Returns how many were new."""
    recorded = 0
    for alert in alerts:
        labels, notes = alert.get("labels", {}), alert.get("annotations", {})
        kind = "alert.resolved" if alert["status"] == "resolved" else "alert.firing"
        key = f"{kind}:{alert.get('fingerprint') or labels.get('alertname', '')}:{alert.get('startsAt', '')}"
        with transaction.atomic():
            event = notification_record(kind=kind, canary_id=None, once_key=key[:120], payload={
                "alertname": labels.get("alertname", ""), "severity": labels.get("severity", ""),
                "summary": notes.get("summary", ""), "detail": notes.get("description", ""),
                "starts_at": alert.get("startsAt", "")})
        recorded += event is not None
    return recorded


# --- the feed -----------------------------------------------------------------------------------


def feed_mark_read(*, user: Any, now: datetime | None = None) -> int:
    """Mark the user's whole feed read (only their own rows)."""
    return NotificationDelivery.objects.filter(user=user, channel=Channel.FEED, read_at__isnull=True).update(
        read_at=now or timezone.now())


def preference_set(*, actor: Any, email: bool, quiet_start: time | None, quiet_end: time | None,
                   ) -> NotificationPreference:
    """A person's own channels and quiet hours (pages ignore quiet hours). Audited."""
    user = as_principal(actor).user
    if (quiet_start is None) != (quiet_end is None):
        raise ValidationFailed.field("quiet_end", "give both ends of the quiet hours, or neither")
    with transaction.atomic():
        pref, _ = NotificationPreference.objects.select_for_update().get_or_create(user=user)
        before = {"email": pref.email, "quiet_start": str(pref.quiet_start or ""),
                  "quiet_end": str(pref.quiet_end or "")}
        pref.email, pref.quiet_start, pref.quiet_end = bool(email), quiet_start, quiet_end
        pref.save()
        audit_append(actor=user, action="notification.preferences_changed", object_type="user", object_id=user.pk,
                     payload={"from": before, "to": {"email": pref.email, "quiet_start": str(quiet_start or ""),
                                                      "quiet_end": str(quiet_end or "")}})
    return pref


__all__ = ["Target", "notification_record", "notifications_store", "provide", "deliveries_send_due"]
