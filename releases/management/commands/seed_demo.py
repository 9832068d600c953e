"""Demo users (one per role, named after it), a service account and a demo model.

Idempotent: run it as often as you like; existing rows are left as they are (passwords are
reset to the given one so the printed logins always work)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from releases.register import services
from releases.register.models import AIModel, ModelVersion

DEMO_USERS = [
    ("owner", "model_owner", "Olivia", "Owner"),
    ("platform", "platform", "Pat", "Platform"),
    ("mrm", "mrm", "Mira", "Validator"),
    ("governance", "ai_governance", "Gus", "Governance"),
    ("risk", "risk_officer", "Rita", "Risk"),
    ("oncall", "on_call", "Oscar", "Oncall"),
    ("auditor", "auditor", "Audrey", "Auditor"),
]


class Command(BaseCommand):
    help = "Create demo users for every role and a demo model with two versions."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--password", default="canaryhub-demo")

    @transaction.atomic
    def handle(self, *args, password: str, **options) -> None:
        User = get_user_model()
        users = {}
        for username, role, first, last in DEMO_USERS:
            user, _ = User.objects.get_or_create(
                username=username,
                defaults={"first_name": first, "last_name": last, "email": f"{username}@canaryhub.test"},
            )
            user.set_password(password)
            user.save(update_fields=["password"])
            user.groups.add(Group.objects.get(name=role))
            users[username] = user
        ci, _ = User.objects.get_or_create(username="ci-bot", defaults={"first_name": "CI", "last_name": "Pipeline"})
        ci.set_unusable_password()
        ci.save(update_fields=["password"])
        ci.groups.add(Group.objects.get(name="service_account"))

        platform = users["platform"]
        if not AIModel.objects.filter(name="support-assistant").exists():
            services.model_register(
                actor=platform,
                name="support-assistant",
                display_name="Customer support assistant",
                description="LLM that drafts answers to customer support tickets.",
                risk_tier="high",
                owner="owner",
                on_call="oncall@canaryhub.test",
                consumers=[
                    {"name": "helpdesk-web", "contact": "helpdesk@canaryhub.test", "channel": "email"},
                    {"name": "mobile-app", "contact": "https://hooks.example.test/mobile", "channel": "webhook"},
                ],
            )
        model = AIModel.objects.get(name="support-assistant")
        if not model.versions.exists():
            services.version_register(
                actor=platform, model_name=model.name, version="1.4.2",
                artifact_uri="s3://models/support-assistant/1.4.2", status=ModelVersion.Status.PRODUCTION,
            )
        if not model.versions.filter(version="1.5.0").exists():
            services.version_register(
                actor=users["owner"], model_name=model.name, version="1.5.0",
                artifact_uri="s3://models/support-assistant/1.5.0",
            )
        self.stdout.write(
            "demo users: " + ", ".join(u for u, *_ in DEMO_USERS) + f" (password: {password}); "
            "service account: ci-bot (tokens via create_token)"
        )
