"""`python manage.py simulate`: serve simulated production and canary model servers and drive
traffic through them; with no Prometheus configured, push each window to the push provider."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser

from governance.access.permissions import TOKEN_OBSERVATIONS, Principal
from governance.audit.services import audit_append
from monitoring.simulator import FAULTS, Pusher, Simulator, inject, take_requested_faults
from releases.register.models import AIModel
from releases.register.services import observation_push


def fault_requests_dir() -> Path:
    """Where `manage.py simulate_fault` leaves requests for the running simulator (the deployment's
    var folder)."""
    return Path(settings.VAR_DIR) / "simulator" / "faults"


class Command(BaseCommand):
    help = "Run the traffic simulator for one model (production and canary versions)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model")
        parser.add_argument("--production", required=True, help="production version, e.g. 1.0.0")
        parser.add_argument("--canary", required=True, help="canary version, e.g. 1.1.0")
        parser.add_argument("--rps", type=float, default=None,
                            help="requests per second before scaling (default CANARYHUB_SIMULATOR_RPS, 50)")
        parser.add_argument("--traffic-scale", type=float, default=None,
                            help="multiply --rps by this (default CANARYHUB_SIMULATOR_TRAFFIC_SCALE, which follows "
                                 "the clock speed)")
        parser.add_argument("--production-port", type=int, default=None,
                            help="production metrics port (default CANARYHUB_SIMULATOR_PRODUCTION_PORT; 0: free)")
        parser.add_argument("--canary-port", type=int, default=None,
                            help="metrics port of the canary (default CANARYHUB_SIMULATOR_CANARY_PORT; 0: a free one)")
        parser.add_argument("--fault", action="append", default=[], metavar="FAULT[@SECONDS]",
                            help="inject on the canary after SECONDS: " + ", ".join(FAULTS))
        parser.add_argument("--push", action="store_true", help="feed the push provider (default without Prometheus)")
        parser.add_argument("--push-every", type=float, default=15.0)
        parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0: run until Ctrl-C)")

    def handle(self, *args: Any, **opts: Any) -> None:
        router_dir = Path(settings.CANARYHUB_ROUTERS.get("file", {}).get("path_dir", settings.VAR_DIR / "router"))
        base_rps = opts["rps"] if opts["rps"] is not None else settings.SIMULATOR_RPS
        scale = opts["traffic_scale"] if opts["traffic_scale"] is not None else settings.SIMULATOR_TRAFFIC_SCALE
        if base_rps <= 0 or scale <= 0:
            raise CommandError("--rps and --traffic-scale must be positive")
        rps = base_rps * scale
        sim = Simulator(opts["model"], opts["production"], opts["canary"], rps=rps, router_dir=router_dir)
        faults: list[tuple[float, str]] = []
        for spec in opts["fault"]:
            name, _, at = spec.partition("@")
            if name not in FAULTS:
                raise CommandError(f"unknown fault {name!r}; one of {', '.join(FAULTS)}")
            faults.append((float(at or 0), name))
        push = opts["push"] or not settings.PROMETHEUS_URL
        sim.production.start(settings.SIMULATOR_PRODUCTION_PORT if opts["production_port"] is None
                             else opts["production_port"], host=settings.SIMULATOR_HOST)
        sim.canary.start(settings.SIMULATOR_CANARY_PORT if opts["canary_port"] is None else opts["canary_port"],
                         host=settings.SIMULATOR_HOST)
        sim.start(serve_metrics=False)
        scaled = f" ({base_rps:g}/s scaled {scale:g}x for the demo clock)" if scale != 1 else ""
        self.stdout.write(f"simulating {opts['model']}: {rps:,.0f} requests/s{scaled}, production {opts['production']} "
                          f"on :{sim.production.port}, canary {opts['canary']} on :{sim.canary.port}"
                          f"{'; pushing windows to the push provider' if push else ''}")
        model_pk = AIModel.objects.filter(name=opts["model"]).values_list("pk", flat=True).first()
        pusher = None
        if model_pk is not None:
            # The audit trail says what traffic the canaries of this deployment were judged on.
            audit_append(actor=None, action="simulator.started", object_type="model", object_id=opts["model"],
                         payload={"production": opts["production"], "canary": opts["canary"],
                                  "requests_per_s": rps, "base_requests_per_s": base_rps, "traffic_scale": scale,
                                  "clock_speed": settings.CLOCK_SPEED, "faults": opts["fault"]})
        if push:
            if model_pk is None:
                raise CommandError(f"no model named {opts['model']!r} to push observations for")
            # The simulator pushes as a machine would: a service account scoped to this model.
            bot, created = get_user_model().objects.get_or_create(
                username="simulator", defaults={"first_name": "Traffic", "last_name": "Simulator"}
            )
            if created:
                bot.set_unusable_password()
                bot.save(update_fields=["password"])
            bot.groups.add(Group.objects.get_or_create(name="service_account")[0])
            principal = Principal(user=bot, scope=frozenset({model_pk}), token_purpose=TOKEN_OBSERVATIONS)
            pusher = Pusher(sim, lambda body: observation_push(actor=principal, data=body))
        fault_dir = fault_requests_dir()
        take_requested_faults(fault_dir)  # requests left from an earlier run are not this run's
        started, last_push = time.monotonic(), time.monotonic()
        try:
            while not opts["seconds"] or time.monotonic() - started < opts["seconds"]:
                time.sleep(0.5)
                elapsed = time.monotonic() - started
                for at, name in list(faults):
                    if elapsed >= at:
                        inject(sim.canary, name)
                        faults.remove((at, name))
                        self.stdout.write(f"{datetime.now(UTC):%H:%M:%S} injected {name} on the canary")
                for name in take_requested_faults(fault_dir):
                    # Asked for while running (`manage.py simulate_fault`): said in the audit trail.
                    inject(sim.canary, name)
                    audit_append(actor=None, action="simulator.fault_injected", object_type="model",
                                 object_id=opts["model"], payload={"fault": name, "version": opts["canary"]})
                    self.stdout.write(f"{datetime.now(UTC):%H:%M:%S} injected {name} on the canary (requested)")
                if pusher and time.monotonic() - last_push >= opts["push_every"]:
                    pusher.push()
                    last_push = time.monotonic()
        except KeyboardInterrupt:
            pass
        finally:
            sim.stop()
