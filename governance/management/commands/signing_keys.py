from django.core.management.base import BaseCommand, CommandError

from canaryhub import keyring
from canaryhub.errors import DomainError
from governance.evidence.services import signing_key_generate


class Command(BaseCommand):
    help = (
        "The server's Ed25519 signing keys (in CANARYHUB_SIGNING_KEY_DIR). 'list' prints them; 'generate' "
        "creates the first key; 'ensure' creates it only if there is none; 'rotate' replaces the active key, "
        "keeping the old public key published so that what it signed still verifies. Changes are audited."
    )

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("action", choices=["list", "generate", "ensure", "rotate"])

    def handle(self, *args, action: str, **options) -> None:
        if action == "ensure":
            if keyring.has_active_key():
                self.stdout.write(f"active signing key {keyring.active_key().key_id}")
                return
            action = "generate"
        if action in {"generate", "rotate"}:
            try:
                new, retired = signing_key_generate(rotate=action == "rotate")
            except DomainError as exc:
                raise CommandError(exc.detail) from exc
            if retired:
                self.stdout.write(f"retired key {retired.key_id} (its public key stays published)")
            self.stdout.write(f"active signing key {new.key_id}, fingerprint {new.fingerprint}")
            return
        for key in keyring.public_keys():
            state = "active" if key.active else f"retired {key.retired_at}"
            self.stdout.write(f"{key.key_id}  {key.algorithm}  {key.fingerprint}  created {key.created_at}  {state}")
