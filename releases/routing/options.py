"""Which router settings a platform engineer may choose on the Routers page, and which belong to
the deployment alone.

A router config registered in the UI is data that anyone holding the platform role can write.
Settings that name a program, a file, a process to signal or a local URL (nginx's binary, its
main configuration, its pid file, its read-back URL) would let that role run programs, write
files or signal processes on the worker, so they come from the environment only
(settings.CANARYHUB_ROUTERS, i.e. CANARYHUB_ROUTER_NGINX / CANARYHUB_ROUTER_WEBHOOK). The form
accepts, per kind, an allow-list of options, each checked here; the folder a file or nginx
router writes must lie inside one of the deployment's router folders
(settings.CANARYHUB_ROUTER_TARGET_DIRS).

Pure: no database, no settings import; the caller passes the deployment's values. A refusal is
an `OptionRefused(field, message)` the services turn into a 400 (saving) or a permanent router
error (a stored row that predates these rules is refused at its next use, never obeyed).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from releases.routing.routers.base import MODEL_NAME_RE, STRATEGIES

HEADER_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
SERVER_RE = re.compile(r"^[A-Za-z0-9.:\[\]_-]{1,255}( [a-z_=0-9 ]{1,100})?$")  # as the nginx router
LOCATION_RE = re.compile(r"^/[A-Za-z0-9._~/-]{0,200}$")
MAX_UPSTREAM_MODELS = 200
MAX_SERVERS = 32

# Keyword arguments of the router classes that only the deployment may set.
DEPLOYMENT_ONLY: dict[str, frozenset[str]] = {
    "file": frozenset({"path_dir", "clock"}),
    "nginx": frozenset({"conf_dir", "main_conf", "nginx_bin", "pid_file", "readback_url"}),
    "webhook": frozenset({"url", "secret"}),
}
# Where each deployment-only setting is given (for the refusal message).
SETTING_OF = {"file": "CANARYHUB_ROUTER_FILE_DIR", "nginx": "CANARYHUB_ROUTER_NGINX",
              "webhook": "CANARYHUB_ROUTER_WEBHOOK"}


class OptionRefused(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _number(low: float, high: float) -> Any:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise OptionRefused("options", f"{name} must be a number of seconds")
        if not low <= value <= high:
            raise OptionRefused("options", f"{name} must be between {low:g} and {high:g} seconds")
        return float(value)
    return check


def _header(name: str, value: Any) -> str:
    if not isinstance(value, str) or not HEADER_RE.match(value):
        raise OptionRefused("options", f"{name} must be a header name (letters, digits and hyphens)")
    return value


def _segment_headers(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise OptionRefused("options", f"{name} must be an object of segment → header name")
    segments = [s for s in STRATEGIES if s != "random"]
    out = {}
    for key, header in value.items():
        if key not in segments:
            raise OptionRefused("options", f"{name}: {str(key)[:40]!r} is not a segment ({', '.join(segments)})")
        out[key] = _header(f"{name}.{key}", header)
    return out


def _servers(name: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_SERVERS:
        raise OptionRefused("options", f"{name} must be a list of 1 to {MAX_SERVERS} host:port addresses")
    for server in value:
        if not isinstance(server, str) or not SERVER_RE.match(server):
            raise OptionRefused("options", f"{name}: {str(server)[:60]!r} is not an upstream server address")
    return list(value)


def _upstreams(name: str, value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict) or len(value) > MAX_UPSTREAM_MODELS:
        raise OptionRefused("options", f"{name} must be an object of model → upstreams (at most {MAX_UPSTREAM_MODELS})")
    out: dict[str, dict[str, Any]] = {}
    for model, entry in value.items():
        if not isinstance(model, str) or not MODEL_NAME_RE.match(model):
            raise OptionRefused("options", f"{name}: {str(model)[:60]!r} is not a register model name")
        if not isinstance(entry, dict) or set(entry) - {"production", "canary", "location"}:
            raise OptionRefused("options", f"{name}.{model} takes production, canary and location only")
        cleaned: dict[str, Any] = {
            part: _servers(f"{name}.{model}.{part}", entry.get(part)) for part in ("production", "canary")
        }
        if entry.get("location") is not None:
            location = entry["location"]
            if not isinstance(location, str) or not LOCATION_RE.match(location):
                raise OptionRefused("options", f"{name}.{model}.location must be a path prefix like /v1/chat")
            cleaned["location"] = location
        out[model] = cleaned
    return out


# The allow-list: per kind, the options the form accepts and how each is checked.
ALLOWED: dict[str, dict[str, Any]] = {
    "file": {},
    "nginx": {
        "upstreams": _upstreams,
        "user_header": _header,
        "segment_headers": _segment_headers,
        "confirm_timeout_s": _number(0.1, 60),
        "command_timeout_s": _number(1, 60),
        "drain_timeout_s": _number(0, 60),
    },
    "webhook": {"timeout_s": _number(0.1, 30)},
}


def allowed_options(kind: str) -> list[str]:
    return sorted(ALLOWED.get(kind, {}))


def clean_options(kind: str, options: Any) -> dict[str, Any]:
    """The options of a `kind` router as the form may set them, checked; else OptionRefused."""
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise OptionRefused("options", "must be a JSON object")
    allowed = ALLOWED.get(kind, {})
    deployment = sorted(str(k) for k in options if k in DEPLOYMENT_ONLY.get(kind, ()))
    if deployment:
        where = "the target and secret fields" if kind == "webhook" else f"the deployment ({SETTING_OF[kind]})"
        raise OptionRefused(
            "options", f"{', '.join(deployment)} cannot be set here: it comes from {where}",
        )
    unknown = sorted(str(k)[:40] for k in options if k not in allowed)
    if unknown:
        takes = ", ".join(allowed_options(kind)) or "no options"
        raise OptionRefused("options", f"{', '.join(unknown)} is not an option of the {kind} router (it takes {takes})")
    return {key: allowed[key](key, value) for key, value in options.items()}


def check_folder(target: str, roots: Iterable[str | os.PathLike[str]]) -> str:
    """A file/nginx router's folder: absolute and, symbolic links resolved, inside one of the
    deployment's router folders. Returns the resolved path."""
    roots = [os.path.realpath(r) for r in roots]
    if not target or not os.path.isabs(target):
        raise OptionRefused("target", "must be an absolute folder path")
    resolved = os.path.realpath(target)
    for root in roots:
        if os.path.commonpath([root, resolved]) == root:
            return resolved
    allowed = ", ".join(roots) or "none are configured"
    raise OptionRefused(
        "target", f"must be inside one of the deployment's router folders (CANARYHUB_ROUTER_TARGET_DIRS: {allowed})"
    )


def router_kwargs(
    *,
    kind: str,
    target: str,
    secret: str,
    options: Mapping[str, Any] | None,
    deployment: Mapping[str, Any],
    roots: Iterable[str | os.PathLike[str]],
) -> dict[str, Any]:
    """The keyword arguments of the router class for a registered config: the deployment's own
    settings of that kind, the checked options on top, the target as the folder or URL.
    Raises OptionRefused for anything the form may not decide, including stored rows."""
    options = clean_options(kind, dict(options or {}))
    if kind == "file":
        return {"path_dir": check_folder(target, roots)}
    if kind == "nginx":
        base = {k: v for k, v in deployment.items() if k in DEPLOYMENT_ONLY["nginx"] or k in ALLOWED["nginx"]}
        if not base.get("main_conf"):
            raise OptionRefused(
                "kind", "the deployment configures no nginx (main_conf in CANARYHUB_ROUTER_NGINX); ask its operator",
            )
        return {**base, **options, "conf_dir": check_folder(target, roots)}
    if kind == "webhook":
        return {"url": target, "secret": secret, **options}
    raise OptionRefused("kind", f"no router kind {kind!r}")
