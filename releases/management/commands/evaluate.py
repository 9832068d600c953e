"""`python manage.py evaluate --once`: one round of the control loop (releases.canaries.loop)
now, synchronously, printing each canary's verdict."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from releases.canaries import states
from releases.canaries.loop import WATCHED, evaluate_tick, watch_tick
from releases.canaries.models import Canary


class Command(BaseCommand):
    help = "Run the evaluator: one tick with --once (every serving canary, due or not), else every cadence."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="one tick now, then exit")

    def handle(self, *args: Any, **options: Any) -> None:
        while True:
            ids = list(Canary.objects.filter(state__in=states.SERVING).values_list("pk", flat=True))
            result = evaluate_tick(canary_ids=ids if options["once"] else None)
            for o in result.outcomes:
                line = f"canary #{o.canary_id}: {o.verdict}"
                if o.rollback:
                    line += f" -> ROLLBACK ({o.rollback})"
                if o.duplicate:
                    line += " (already evaluated this second)"
                self.stdout.write(line)
            watched = list(Canary.objects.filter(WATCHED).values_list("pk", flat=True))
            for o in watch_tick(canary_ids=watched if options["once"] else None):
                line = f"canary #{o.canary_id} (after 100 %): {o.verdict}"
                if o.rollback:
                    line += f" -> REVERT ({o.rollback})"
                self.stdout.write(line)
            self.stdout.write(
                f"tick: {len(result.outcomes)} canaries, {result.queries} metric queries, {result.duration_ms:.0f} ms"
            )
            if options["once"]:
                return
            time.sleep(settings.EVALUATION_CADENCE_S)
