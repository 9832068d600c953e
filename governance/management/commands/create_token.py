from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from canaryhub.errors import DomainError
from governance.tokens.services import token_create


class Command(BaseCommand):
    help = "Print a new API token for USER (shown once; only its hash is stored)."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("username")
        parser.add_argument(
            "--service-account", action="store_true",
            help="create USER if missing as a service account (no password, no signing rights)",
        )
        parser.add_argument("--models", default="", help="comma-separated model names the token may act on")
        parser.add_argument("--name", default="", help="a label for the token (default: cli)")
        parser.add_argument(
            "--purpose", choices=["ci", "observations"], default="ci",
            help="a service account's token: ci (versions and canaries) or observations (pushes metric windows only)",
        )

    def handle(
        self, *args, username: str, service_account: bool, models: str, name: str, purpose: str, **options
    ) -> None:
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            if not service_account:
                raise CommandError(f"no user {username!r} (pass --service-account to create a service account)")
            user = User.objects.create(username=username, is_active=True)
            user.set_unusable_password()
            user.save(update_fields=["password"])
        if service_account:
            user.groups.add(Group.objects.get(name="service_account"))
        scope = [m.strip() for m in models.split(",") if m.strip()]
        try:
            token, secret = token_create(
                actor=None, user=user, name=name or "cli", scope=scope or None, purpose=purpose
            )
        except DomainError as exc:
            raise CommandError(f"{exc.detail}: {exc.errors}") from exc
        self.stderr.write(f"token {token.prefix} for {username}; store it now, it is not shown again:")
        self.stdout.write(secret)
