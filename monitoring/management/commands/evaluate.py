"""`python manage.py evaluate --once`: one evaluation tick now, synchronously, printing each
canary's verdict."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the evaluator: one tick with --once (every serving canary, due or not), else every cadence."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one tick now, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        from django.conf import settings

        from monitoring.services import evaluate_tick
        from releases.lifecycle import SERVING_STATES
        from releases.models import Canary

        while True:
            ids = list(Canary.objects.filter(state__in=list(SERVING_STATES)).values_list("pk", flat=True))
            result = evaluate_tick(canary_ids=ids if options["once"] else None)
            for o in result.outcomes:
                line = f"canary #{o.canary_id}: {o.verdict}"
                if o.rollback:
                    line += f" -> ROLLBACK ({o.rollback})"
                if o.duplicate:
                    line += " (already evaluated this second)"
                self.stdout.write(line)
            self.stdout.write(
                f"tick: {len(result.outcomes)} canaries, {result.queries} metric queries, {result.duration_ms:.0f} ms"
            )
            if options["once"]:
                return
            time.sleep(settings.EVALUATION_CADENCE_S)
