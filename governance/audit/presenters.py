"""The audit trail in words: one line per event, naming who did what to which object, with the
objects it names linked to their pages.

The words follow the event's kind (its `action`); a kind not described here still reads as a
sentence built from its name. Links are reversed by URL name only, so this module imports
nothing from the layers above the audit trail.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.urls import NoReverseMatch, reverse
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

from governance.access.labels import role_label
from governance.audit.models import AuditEvent
from governance.audit.selectors import INTERNAL_PREFIX


def _link(label: str, name: str, *args: Any) -> SafeString:
    try:
        return format_html('<a href="{}">{}</a>', reverse(name, args=args), label)
    except NoReverseMatch:
        return format_html("{}", label)


def canary_link(pk: Any) -> SafeString:
    return _link(f"canary #{pk}", "releases:canary-detail", int(pk)) if str(pk).isdigit() else format_html("a canary")


def incident_link(pk: Any) -> SafeString:
    return (_link(f"incident #{pk}", "evidence:incident-detail", int(pk)) if str(pk).isdigit()
            else format_html("an incident"))


def model_link(name: Any) -> SafeString:
    return _link(str(name), "releases:model-detail", str(name)) if name else format_html("a model")


def version_link(ref: Any) -> SafeString:
    """`fraud-scorer@2.1` links the version; a reference without `@` is shown as it is."""
    name, sep, version = str(ref).partition("@")
    if not sep:
        return format_html("{}", ref)
    return _link(f"{name} {version}", "releases:version-detail", name, version)


def certificate_link(pk: Any) -> SafeString:
    return _link(f"certificate {str(pk)[:8]}", "evidence:certificate-detail", str(pk))


def stage_words(index: Any) -> str:
    """Stages are numbered from 1 for people (the records count from 0)."""
    return f"stage {int(index) + 1}" if isinstance(index, int) else "a stage"


def _step_words(step: str) -> str:
    # "start", or "promote:<from>-><to>" with stage indices from 0.
    if step == "start":
        return "the start"
    _, _, moves = step.partition(":")
    _, _, to = moves.partition("->")
    return f"the promotion to {stage_words(int(to))}" if to.isdigit() else "a step"


def _actor(event: AuditEvent) -> str:
    return "CanaryHub" if event.actor_id is None and event.actor_name == "system" else event.actor_name


Summary = Callable[[AuditEvent, dict[str, Any], str], SafeString]


def _canary_move(words: str) -> Summary:
    def say(event: AuditEvent, p: dict[str, Any], who: str) -> SafeString:
        share = p.get("traffic_percent")
        stage = f" ({stage_words(p['stage_index'])}, {share:g}% of traffic)" if (
            isinstance(p.get("stage_index"), int) and isinstance(share, int | float)) else ""
        reason = f": {p['reason']}" if isinstance(p.get("reason"), str) and p.get("reason") else ""
        return format_html("{} {} {}{}{}", who, words, canary_link(event.object_id), stage, reason)
    return say


def _on(kind: str, words: str) -> Summary:
    """`who <words> <object>` for an event on a canary, incident, model or version."""
    def say(event: AuditEvent, p: dict[str, Any], who: str) -> SafeString:
        return format_html("{} {} {}", who, words, object_link(kind, event.object_id))
    return say


def _signed(event: AuditEvent, p: dict[str, Any], who: str) -> SafeString:
    return format_html("{} signed {} of {} as {}", who, _step_words(str(p.get("step", ""))),
                       canary_link(event.object_id), _in_sentence(role_label(str(p.get("role", "")))))


def _in_sentence(label: str) -> str:
    # "Model risk (MRM)" reads "model risk (MRM)" inside a sentence.
    return label[:1].lower() + label[1:]


def _break_glass(event: AuditEvent, p: dict[str, Any], who: str) -> SafeString:
    return format_html("{} used break-glass to {} {} (retrospective review under {})", who,
                       str(p.get("act", "act on")).replace("_", " "), canary_link(event.object_id),
                       incident_link(p.get("incident")))


def _incident_opened(event: AuditEvent, p: dict[str, Any], who: str) -> SafeString:
    canary = format_html(" for {}", canary_link(p["canary"])) if p.get("canary") else ""
    return format_html("{} opened {}{}: {}", who, incident_link(event.object_id), canary, p.get("summary", ""))


def _certificate(issued: bool) -> Summary:
    def say(event: AuditEvent, p: dict[str, Any], who: str) -> SafeString:
        if issued:
            return format_html("{} issued {} for {}", who, certificate_link(event.object_id),
                               canary_link(p.get("canary")))
        return format_html("{} returned {} without a certificate", who, canary_link(p.get("canary")))
    return say


def _threshold(words: str) -> Summary:
    def say(event: AuditEvent, p: dict[str, Any], who: str) -> SafeString:
        return format_html("{} {} threshold change #{} of {}", who, words, p.get("request", "?"),
                           canary_link(event.object_id))
    return say


def _version_move(words: str) -> Summary:
    def say(event: AuditEvent, p: dict[str, Any], who: str) -> SafeString:
        canary = format_html(" ({})", canary_link(p["canary"])) if p.get("canary") else ""
        return format_html("{} {} {}{}", who, words, version_link(event.object_id), canary)
    return say


def _said(words: str) -> Summary:
    """`who <words>`, `{id}` standing for the event's object id (no page to link)."""
    def say(event: AuditEvent, p: dict[str, Any], who: str) -> SafeString:
        return format_html("{} {}", who, words.replace("{id}", str(event.object_id)))
    return say


def _export_requested(event: AuditEvent, p: dict[str, Any], who: str) -> SafeString:
    if p.get("canary"):
        scope = format_html("for {}", canary_link(p["canary"]))
    elif p.get("model"):
        scope = format_html("for model {}", model_link(p["model"]))
    else:
        scope = format_html("of {}", str(p.get("scope", "the trail")).replace("_", " "))
    return format_html("{} requested evidence export #{} {}", who, event.object_id, scope)


def _field_change(event: AuditEvent, p: dict[str, Any], who: str) -> SafeString:
    verb = event.action.removeprefix(INTERNAL_PREFIX)
    fields = ", ".join(sorted((p.get("changes") or {}).keys())) if isinstance(p.get("changes"), dict) else ""
    return format_html("Field history: {} {} {} {}{}", who, {"create": "created", "update": "updated",
                                                          "delete": "deleted"}.get(verb, verb),
                       event.object_type, p.get("object_repr") or event.object_id,
                       f" ({fields})" if fields else "")


SUMMARIES: dict[str, Summary] = {
    "canary.initiated": _on("canary", "initiated"),
    "canary.signed": _signed,
    "canary.signature_voided": _on("canary", "voided a signature on"),
    "canary.started": _canary_move("started"),
    "canary.promoted": _canary_move("promoted"),
    "canary.completed": _canary_move("completed"),
    "canary.held": _canary_move("held"),
    "canary.resumed": _canary_move("resumed"),
    "canary.running": _canary_move("let run again"),
    "canary.suspended": _canary_move("suspended"),
    "canary.rolled_back": _canary_move("rolled back"),
    "canary.aborted": _canary_move("aborted"),
    "canary.reverted": _canary_move("reverted"),
    "canary.certified": _canary_move("marked certified"),
    "canary.awaiting_approval": _canary_move("set to await signatures:"),
    "canary.standby_released": _on("canary", "released the previous version kept on standby by"),
    "canary.break_glass": _break_glass,
    "canary.threshold_change_requested": _threshold("requested"),
    "canary.threshold_change_approved": _threshold("approved"),
    "canary.threshold_change_rejected": _threshold("rejected"),
    "canary.threshold_change_applied": _threshold("applied"),
    "canary.threshold_change_lapsed": _threshold("let lapse"),
    "slo.breached": _on("canary", "recorded an SLO breach on"),
    "evidence.downloaded": _on("canary", "downloaded the evidence of"),
    "incident.opened": _incident_opened,
    "incident.rollback_confirmed": _on("incident", "saw the rollback confirmed at 0% for"),
    "incident.root_cause_filed": _on("incident", "filed the root cause of"),
    "incident.root_cause_accepted": _on("incident", "accepted the root cause of"),
    "incident.root_cause_returned": _on("incident", "returned the root cause of"),
    "certificate.issued": _certificate(True),
    "certificate.returned": _certificate(False),
    "model.registered": _on("model", "registered model"),
    "model.updated": _on("model", "updated model"),
    "version.registered": _version_move("registered version"),
    "version.updated": _version_move("updated version"),
    "version.status_changed": _version_move("changed the status of"),
    "version.promoted_to_production": _version_move("made production version"),
    "version.reinstated": _version_move("reinstated"),
    "version.reinitiation_approved": _version_move("approved a new canary of"),
    "version.reinitiation_used": _version_move("used the re-initiation approval of"),
    "version.escalated_to_committee": _version_move("escalated to the committee"),
    "version.escalation_resolved": _version_move("resolved the escalation of"),
    "evidence.export_requested": _export_requested,
    "evidence.export_built": _said("built evidence export #{id}"),
    "user.logged_in": _said("logged in"),
    "user.login_failed": lambda event, p, who: format_html("A login as {} failed", event.object_id),
    "user.groups_changed": _said("changed the roles of user {id}"),
    "token.created": _said("created API token {id}…"),
    "token.revoked": _said("revoked API token {id}…"),
    "router.registered": _said("registered router {id}"),
    "router.updated": _said("updated router {id}"),
    "router.disabled": _said("disabled router {id}"),
    "simulator.started": _said("started the traffic simulator for model {id}"),
    "monitor.outage": _said("found the monitoring loop silent"),
    "monitor.recovered": _said("saw the monitoring loop running again"),
    "access.refused": _said("was refused a request"),
}

_LINKS: dict[str, Callable[[Any], SafeString]] = {
    "canary": canary_link, "incident": incident_link, "model": model_link, "model_version": version_link,
    "certificate": certificate_link,
}


def object_link(object_type: str, object_id: Any) -> SafeString:
    """The event's object, linked when it has a page."""
    link = _LINKS.get(object_type)
    return link(object_id) if link else format_html("{} {}", object_type.replace("_", " "), object_id)


def event_summary(event: AuditEvent) -> SafeString:
    """One readable line for an event: "alice signed the promotion to stage 2 of canary #4 as model
    owner". Unknown kinds read "<who> <kind in words> <object>"."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    who = _actor(event)
    if event.action.startswith(INTERNAL_PREFIX):
        return _field_change(event, payload, who)
    say = SUMMARIES.get(event.action)
    if say is not None:
        try:
            return say(event, payload, who)
        except (TypeError, ValueError, KeyError):
            pass  # an older payload shape: fall back to the generic words below
    _, _, verb = event.action.partition(".")
    return format_html("{}: {} — {}", who, verb.replace("_", " ") or event.action,
                       object_link(event.object_type, event.object_id))


_NUMBERED = re.compile(r"\b(canary|incident) #(\d+)\b", re.IGNORECASE)


def link_numbers(text: str) -> SafeString:
    """Plain text with each "canary #N" and "incident #N" linked to its page (the rest escaped)."""
    parts, last = [], 0
    for match in _NUMBERED.finditer(str(text)):
        parts.append(escape(text[last:match.start()]))
        link = canary_link if match.group(1).lower() == "canary" else incident_link
        parts.append(format_html('<a href="{}">{}</a>', _href(link(match.group(2))), match.group(0)))
        last = match.end()
    parts.append(escape(str(text)[last:]))
    return mark_safe("".join(parts))  # noqa: S308 - every part is escaped or built by format_html


def _href(link: SafeString) -> str:
    found = re.search(r'href="([^"]+)"', str(link))
    return found.group(1) if found else "#"


def event_links(event: AuditEvent) -> list[SafeString]:
    """The objects an event names besides its own (its canary, incident, certificate)."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    links = []
    if event.object_type != "canary" and str(payload.get("canary", "")).isdigit():
        links.append(canary_link(payload["canary"]))
    if event.object_type != "incident" and str(payload.get("incident", "")).isdigit():
        links.append(incident_link(payload["incident"]))
    if payload.get("certificate") and event.object_type != "certificate":
        links.append(certificate_link(payload["certificate"]))
    return links
