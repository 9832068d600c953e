"""`python manage.py simulate_fault FAULT`: inject a fault on the canary of the running demo
simulator (`make run` starts one), e.g. an error spike to watch the rollback happen. The
simulator takes the request within a second and says so in its log and in the audit trail."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from monitoring.simulator import FAULTS, request_fault
from releases.management.commands.simulate import fault_requests_dir


class Command(BaseCommand):
    help = "inject a fault on the running simulator's canary: " + ", ".join(FAULTS)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("fault", choices=FAULTS)

    def handle(self, *args: Any, **opts: Any) -> None:
        request_fault(fault_requests_dir(), opts["fault"])
        self.stdout.write(f"asked the running simulator to inject {opts['fault']} on its canary; its log says when")
