"""Router adapters that carry a canary's traffic split to the data plane (see base.py)."""

from releases.routing.routers.base import (
    AppliedSplit,
    PermanentRouterError,
    Router,
    RouterError,
    Split,
    StaleSplitError,
    TransientRouterError,
    get_router,
    register_router,
    router_kinds,
)

__all__ = [
    "AppliedSplit",
    "PermanentRouterError",
    "Router",
    "RouterError",
    "Split",
    "StaleSplitError",
    "TransientRouterError",
    "get_router",
    "register_router",
    "router_kinds",
]
