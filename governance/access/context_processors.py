from django.conf import settings
from django.http import HttpRequest

from governance.access.permissions import roles_of


def canaryhub(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    return {
        "clock_speed": settings.CLOCK_SPEED,
        "traffic_scale": settings.SIMULATOR_TRAFFIC_SCALE,
        "simulated_rps": settings.SIMULATOR_RPS * settings.SIMULATOR_TRAFFIC_SCALE,
        "user_roles": roles_of(user) if user is not None and user.is_authenticated else frozenset(),
    }
