from django.core.management.base import BaseCommand, CommandError

from canaryhub.errors import DomainError
from governance.tokens.services import token_revoke


class Command(BaseCommand):
    help = "Revoke the API token with this prefix (the part after chk_ shown by create_token); audited."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("prefix")

    def handle(self, *args, prefix: str, **options) -> None:
        try:
            token = token_revoke(actor=None, prefix=prefix)
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(f"token {token.prefix} ({token.name}) of {token.user.get_username()} revoked")
