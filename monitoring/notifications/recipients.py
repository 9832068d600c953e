"""Who hears what: the one table of notifications, and the pure choice of channels.

`WHO_HEARS[kind]` names the roles told of each kind of outbox row (pattern §4.3, §4.7, §7.1,
§10.1-10.3), the roles paged through PagerDuty, and the page's severity. The roles:

- owner: the model's owner; consumers: the model's registered consumers (e-mail, Slack,
  webhook or PagerDuty, as each registered); rollback_contact: the canary's rollback contact;
  signers: exactly the people whose signature the canary's current step still needs; signer:
  the person whose signature was voided;
  requester: who asked for a threshold change; ci_callback: the URL the pipeline that started
  the canary gave, told of every state change — resolved by the layer that knows the canary
  (releases registers its resolver: monitoring.notifications.services.provide);
- platform, mrm, ai_governance, on_call: the people in that group (on_call also the
  deployment's on-call address, and the model's on-call contact when it is an address);
- model_risk_committee: the committee's configured address.

`targets` turns the resolved contacts into one message per channel and address (pure).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo

ROLES = frozenset({
    "owner", "consumers", "rollback_contact", "signers", "signer", "requester", "ci_callback",
    "platform", "mrm", "ai_governance", "on_call", "model_risk_committee",
})


@dataclass(frozen=True)
class Rule:
    audience: tuple[str, ...]
    pages: bool = False  # on-call is paged (PagerDuty); pages ignore quiet hours
    severity: str = "info"  # PagerDuty severity: critical (P1), error (P2), warning, info


_STAGE = ("consumers", "owner", "ci_callback")
_P1 = Rule(("on_call", "platform"), pages=True, severity="critical")

WHO_HEARS: dict[str, Rule] = {
    # a canary's life
    "canary.initiated": Rule(("consumers", "owner", "rollback_contact", "ci_callback")),
    "canary.signatures_requested": Rule(("signers", "ci_callback")),
    "canary.started": Rule(_STAGE),
    "canary.promoted": Rule(_STAGE),
    "canary.completed": Rule(_STAGE),
    "canary.certified": Rule(("consumers", "owner", "ai_governance", "ci_callback")),
    "canary.awaiting_approval": Rule(("signers", "ci_callback")),
    # a signature that stopped counting (a red or stale evaluation followed it): its signer
    "canary.signature_voided": Rule(("signer",)),
    "canary.held": Rule(("owner", "platform", "ci_callback")),
    "canary.running": Rule(("ci_callback",)),
    "canary.suspended": Rule(("on_call", "platform", "owner", "ci_callback")),
    "canary.resumed": Rule(("on_call", "platform", "owner", "ci_callback")),
    "canary.rolled_back": Rule(("owner", "on_call", "rollback_contact", "consumers", "ci_callback"),
                               pages=True, severity="error"),
    "canary.aborted": Rule(("owner", "consumers", "ci_callback")),
    # after 100 %: a revert to the hot standby is told as a rollback is; the standby's release too
    "canary.reverted": Rule(("owner", "on_call", "rollback_contact", "consumers", "ci_callback"), pages=True,
                            severity="error"),
    "canary.standby_released": Rule(("owner", "platform", "on_call")),
    # on-call's emergency act (§3.2): paged, and MRM reviews it in retrospect
    # a measured SLO past its target (rollback, promotion)
    "slo.breached": Rule(("on_call", "platform"), severity="warning"),
    "canary.break_glass": Rule(("on_call", "platform", "mrm", "owner"), pages=True, severity="error"),
    # a platform engineer's urgent PATCH, faster than the schedule (§3.2): MRM reviews it in retrospect
    "canary.urgent_patch": Rule(("on_call", "platform", "mrm", "owner", "consumers"), severity="warning"),
    "early_warning": Rule(("on_call", "owner"), severity="warning"),
    "metric_gap": Rule(("owner",), severity="warning"),
    # threshold change requests: the reviewers, then whoever asked
    "canary.threshold_change_requested": Rule(("ai_governance", "mrm")),
    "canary.threshold_change_approved": Rule(("requester",)),
    "canary.threshold_change_rejected": Rule(("requester",)),
    "canary.threshold_change_applied": Rule(("requester", "owner")),
    "canary.threshold_change_lapsed": Rule(("requester",)),
    # control-plane incidents (P1): on-call is paged
    "incident.monitor_silent": _P1,
    "incident.rollback_unconfirmed": _P1,
    # the same rollback confirmed later: told, not paged (the incident stays open for its root cause)
    "incident.rollback_confirmed": Rule(("on_call", "platform"), severity="warning"),
    "incident.audit_chain": _P1,
    "incident.router": _P1,
    "assignment_store_down": Rule(("on_call",), severity="warning"),
    # a rollback's follow-up (§10.3)
    "incident.root_cause_filed": Rule(("mrm",)),
    "incident.root_cause_due": Rule(("on_call", "mrm")),
    "incident.root_cause_overdue": Rule(("on_call", "mrm"), severity="warning"),
    "incident.root_cause_returned": Rule(("on_call", "mrm")),
    # accepted: the incident is resolved, and so is its page
    "incident.root_cause_accepted": Rule(("owner", "on_call"), pages=True, severity="error"),
    "version.reinitiation_approved": Rule(("owner", "mrm")),
    "committee.escalation": Rule(("model_risk_committee", "owner", "mrm")),
    "version.escalation_resolved": Rule(("owner", "mrm", "ai_governance")),
    # Prometheus alerts through Alertmanager (which pages PagerDuty itself)
    "alert.firing": Rule(("on_call", "platform"), severity="critical"),
    "alert.resolved": Rule(("on_call", "platform")),
    # the on-call summary, every 4 h in business hours while a canary is active (§10.2)
    "oncall.summary": Rule(("on_call",)),
}

NOBODY = Rule(())


def rule_for(kind: str) -> Rule:
    return WHO_HEARS.get(kind, NOBODY)


def _span(text: str) -> tuple[int, int]:
    start, _, end = text.partition("-")
    return int(start), int(end or start)


def summary_slot(now: datetime, *, tz: tzinfo, hours: str, days: str, every_h: int) -> str | None:
    """Pure: the on-call summary slot `now` falls in ("2025-05-05T13" for the summary of 13:00
    local), or None outside business hours. `hours` "09-17" is [09:00, 17:00) local time and
    `days` "1-5" ISO weekdays (Monday to Friday)."""
    local = now.astimezone(tz)
    first, last = _span(hours)
    d0, d1 = _span(days)
    if not (d0 <= local.isoweekday() <= d1) or not (first <= local.hour < last):
        return None
    start = first + (local.hour - first) // every_h * every_h
    return f"{local:%Y-%m-%d}T{start:02d}"


@dataclass(frozen=True)
class Contact:
    """One resolved member of a role: a person (`user_id`, with the e-mail on their account) or
    an address on a channel (a consumer's webhook, the committee's mailbox)."""

    role: str
    user_id: int | None = None
    email: str = ""
    channel: str = ""  # for an address: email | slack | webhook | pagerduty
    address: str = ""


@dataclass(frozen=True)
class Target:
    channel: str
    address: str
    user_id: int | None
    roles: tuple[str, ...]
    page: bool = False


_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")


def contact_from_text(role: str, text: str) -> Contact | None:
    """A free-text contact (a model's on-call, a canary's rollback contact): an e-mail address or
    an http(s) URL is a channel; a handle or rota name is not (its people hear through their group)."""
    text = (text or "").strip()
    if _EMAIL.match(text):
        return Contact(role=role, channel="email", address=text)
    if text.startswith(("https://", "http://")):
        return Contact(role=role, channel="webhook", address=text)
    return None


def targets(
    rule: Rule, contacts: Iterable[Contact], *, email_off: frozenset[int] = frozenset(), pager_key: str = "",
    team_slack: str = "",
) -> list[Target]:
    """One message per (channel, address), with every role that brought it there. A person gets
    the in-app feed and, unless they turned it off, e-mail; on-call is paged when the rule pages
    and a PagerDuty routing key is configured; the team's Slack channel hears what on-call or
    platform hear."""
    merged: dict[tuple[str, str], tuple[int | None, list[str], bool]] = {}

    def add(channel: str, address: str, user_id: int | None, role: str, page: bool = False) -> None:
        key = (channel, address)
        uid, roles, paged = merged.get(key, (user_id, [], False))
        if role not in roles:
            roles.append(role)
        merged[key] = (uid if uid is not None else user_id, roles, paged or page)

    for c in contacts:
        if c.user_id is not None:
            add("feed", f"user:{c.user_id}", c.user_id, c.role)
            if c.email and c.user_id not in email_off:
                add("email", c.email.lower(), c.user_id, c.role, page=rule.pages and c.role == "on_call")
        elif c.channel and c.address:
            add(c.channel, c.address if c.channel != "email" else c.address.lower(), None, c.role,
                page=rule.pages and c.role == "on_call")
    if rule.pages and pager_key and "on_call" in rule.audience:
        add("pagerduty", pager_key, None, "on_call", page=True)
    if team_slack and {"on_call", "platform"} & set(rule.audience):
        add("slack", team_slack, None, "on_call" if "on_call" in rule.audience else "platform")
    return [Target(channel=ch, address=addr, user_id=uid, roles=tuple(roles), page=paged)
            for (ch, addr), (uid, roles, paged) in merged.items()]


def check_table(table: Mapping[str, Rule] = WHO_HEARS) -> list[str]:
    """Roles in the table that nobody resolves (a typo would silence a row): empty when sound."""
    return [f"{kind}: {role}" for kind, rule in table.items() for role in rule.audience if role not in ROLES]
