"""Where a router may send HTTP requests: not to private, loopback, link-local or otherwise
reserved addresses (the worker's own services, cloud metadata at 169.254.169.254) unless the
deployment allows those networks (settings.CANARYHUB_ROUTER_ALLOWED_NETWORKS, CIDRs), and never
following a redirect. A literal address is checked when the router is built; every request
resolves the host again and checks each address it resolves to."""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
import urllib.request
from http import HTTPStatus
from typing import Any

from releases.routing.routers.base import PermanentRouterError

SETTING = "CANARYHUB_ROUTER_ALLOWED_NETWORKS"


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    # Read when asked (not at import): routers are also built outside a configured Django.
    from django.conf import settings  # noqa: PLC0415 - lazily: the adapters import without Django set up

    return [ipaddress.ip_network(n, strict=False) for n in getattr(settings, SETTING, [])]


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if any(address in network for network in _allowed_networks()):
        return False
    return not address.is_global or address.is_multicast


def check_address(host: str, *, resolve: bool) -> None:
    """PermanentRouterError when `host` is (or, with `resolve`, resolves to) a refused address."""
    try:
        addresses = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        if not resolve:
            return  # a name: checked at each request, when it is resolved
        try:
            infos = socket.getaddrinfo(host, None)
        except OSError:
            return  # unresolvable: the request itself fails with its own error
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    for address in addresses:
        if _refused(address):
            raise PermanentRouterError(
                f"{host} is a private, loopback or link-local address ({address}); the deployment allows such "
                f"destinations only through {SETTING}"
            )


def check_url(url: str, *, resolve: bool) -> None:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PermanentRouterError("an http(s) URL is needed")
    check_address(parsed.hostname, resolve=resolve)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises the 3xx as an HTTPError


_OPENER = urllib.request.build_opener(_NoRedirect)


def open_checked(request: urllib.request.Request | str, *, timeout: float) -> Any:
    """urlopen after checking where the URL resolves to, without following redirects."""
    url = request.full_url if isinstance(request, urllib.request.Request) else request
    check_url(url, resolve=True)
    return _OPENER.open(request, timeout=timeout)


def reason(status: int) -> str:
    """A short, fixed reason for a status (never the body the server sent)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "unknown status"
