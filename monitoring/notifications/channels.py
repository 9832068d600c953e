"""The channels a message leaves by: e-mail (Django's e-mail framework), Slack incoming webhooks
(Block Kit), PagerDuty Events API v2, and the generic signed webhook. Every endpoint is a setting
or a registered address, never typed into a form of this module.

Each `send_*` raises TransientError (retry later: no answer, timeout, 5xx, 429) or PermanentError
(a 4xx, a refused address) and returns nothing when the channel accepted the message.

The generic webhook's body (version 1):

    {"version": 1, "id": "<idempotency key>", "kind": "canary.rolled_back", "canary_id": 7,
     "title": "...", "text": "...", "link": "https://.../canaries/7/", "created_at": "...",
     "payload": {...}}

signed like the webhook router's requests (canaryhub.signing), with the idempotency key also in
`Idempotency-Key` so a receiver can discard a resend.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from canaryhub.signing import signed_headers
from monitoring.notifications.messages import Message

WEBHOOK_VERSION = 1
RESOLVES = frozenset({"incident.root_cause_accepted"})  # kinds that resolve the page of their incident


class DeliveryError(Exception):
    pass


class TransientError(DeliveryError):
    pass


class PermanentError(DeliveryError):
    pass


# --- addresses ----------------------------------------------------------------------------------


def _private(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise TransientError(f"cannot resolve {host}: {exc}") from exc
    for info in infos:
        ip = ipaddress.ip_address(info[4][0].split("%")[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast \
                or ip.is_unspecified:
            return True
    return False


def check_url(url: str, *, allow_private: bool | None = None) -> None:
    """Refuse a URL that is not http(s), or (unless the deployment allows it:
    CANARYHUB_NOTIFY_ALLOW_PRIVATE_URLS) one whose host resolves to a private, loopback or
    link-local address: a registered webhook must not reach into the deployment's own network."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PermanentError("only http(s) URLs are delivered to")
    allow = settings.NOTIFY_ALLOW_PRIVATE_URLS if allow_private is None else allow_private
    if not allow and _private(parts.hostname):
        raise PermanentError(f"refused: {parts.hostname} is a private or local address")


def _post(url: str, body: bytes, headers: dict[str, str], *, trusted: bool) -> bytes:
    if not trusted:
        check_url(url)
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=settings.NOTIFY_SEND_TIMEOUT_S) as response:  # noqa: S310
            return response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:200].decode("utf-8", "replace")
        if exc.code >= 500 or exc.code == 429:
            raise TransientError(f"HTTP {exc.code}: {detail}") from exc
        raise PermanentError(f"HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise TransientError(f"no answer from {urllib.parse.urlsplit(url).netloc}: {exc}") from exc


# --- e-mail -------------------------------------------------------------------------------------


def send_email(message: Message, *, to: str, key: str) -> None:
    host = settings.NOTIFY_BASE_URL.split("//", 1)[-1].split("/", 1)[0].split(":", 1)[0] or "canaryhub"
    thread = f"<canary-{message.canary_id}@{host}>" if message.canary_id else None
    headers = {"List-Id": settings.NOTIFY_LIST_ID, "Message-ID": f"<{key}@{host}>", "X-CanaryHub-Kind": message.kind}
    if thread:
        headers.update({"In-Reply-To": thread, "References": thread, "X-CanaryHub-Canary": str(message.canary_id)})
    email = EmailMultiAlternatives(subject=message.subject, body=message.text, to=[to], headers=headers,
                                   connection=get_connection(timeout=settings.NOTIFY_SEND_TIMEOUT_S))
    email.attach_alternative(message.html, "text/html")
    try:
        email.send()
    except OSError as exc:  # smtplib's errors are OSErrors; refused recipients too
        code = getattr(exc, "smtp_code", 0) or 0
        if 500 <= code < 600 or exc.__class__.__name__ == "SMTPRecipientsRefused":
            raise PermanentError(f"SMTP refused: {exc}") from exc
        raise TransientError(f"SMTP: {exc}") from exc


# --- Slack --------------------------------------------------------------------------------------


def slack_body(message: Message) -> dict[str, Any]:
    fields = [{"type": "mrkdwn", "text": f"*{name}*\n{value[:300]}"} for name, value in message.lines[:10]]
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}}]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    blocks.append({"type": "actions", "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": "Open in CanaryHub"}, "url": message.link},
    ]})
    return {"text": message.subject, "blocks": blocks}


def send_slack(message: Message, *, url: str, key: str, trusted: bool) -> None:
    _post(url, json.dumps(slack_body(message)).encode(), {"Idempotency-Key": key}, trusted=trusted)


# --- PagerDuty ----------------------------------------------------------------------------------


def pagerduty_body(message: Message, *, routing_key: str, severity: str) -> dict[str, Any]:
    """Events API v2: one PagerDuty incident per canary (or per control-plane incident without a
    canary), so a repeat dedups and the incident's resolution (its root cause accepted) resolves
    the page."""
    p = message.payload
    dedup = f"canaryhub-canary-{message.canary_id}" if message.canary_id else f"canaryhub-incident-{p.get('incident')}"
    if message.kind in RESOLVES:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup}
    return {
        "routing_key": routing_key, "event_action": "trigger", "dedup_key": dedup,
        "payload": {"summary": message.subject[:1024], "source": "canaryhub", "severity": severity,
                    "component": str(p.get("model", "control-plane")), "class": message.kind,
                    "custom_details": dict(message.lines)},
        "links": [{"href": message.link, "text": "CanaryHub"}],
    }


def send_pagerduty(message: Message, *, routing_key: str, severity: str) -> None:
    body = pagerduty_body(message, routing_key=routing_key, severity=severity)
    _post(settings.NOTIFY_PAGERDUTY_URL, json.dumps(body).encode(), {}, trusted=True)


# --- generic webhook ----------------------------------------------------------------------------


def webhook_body(message: Message, *, key: str, created_at: datetime) -> dict[str, Any]:
    return {"version": WEBHOOK_VERSION, "id": key, "kind": message.kind, "canary_id": message.canary_id,
            "title": message.title, "text": message.text, "link": message.link,
            "created_at": created_at.isoformat(), "payload": message.payload}


def send_webhook(message: Message, *, url: str, key: str, created_at: datetime, trusted: bool = False) -> None:
    body = json.dumps(webhook_body(message, key=key, created_at=created_at), sort_keys=True).encode()
    headers = {"Idempotency-Key": key, **signed_headers(settings.NOTIFY_WEBHOOK_SECRET, body)}
    _post(url, body, headers, trusted=trusted)
