from django.core.management.base import BaseCommand, CommandError

from governance.audit.services import audit_verify


class Command(BaseCommand):
    help = "Recompute the audit hash chain. Exit 0 when it verifies; otherwise exit 1 naming the first bad event."

    def handle(self, *args, **options) -> None:
        result = audit_verify()
        if result.ok:
            self.stdout.write(f"audit chain OK: {result.length} events, head {result.head_hash}")
            return
        raise CommandError(
            f"audit chain BROKEN at sequence {result.first_bad_seq}: {result.reason} "
            f"({result.length} events verified before it)",
            returncode=1,
        )
