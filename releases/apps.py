from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "releases"
    verbose_name = "Releases: model register and canaries"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from releases.models import AIModel, Consumer, ModelVersion

        # Field-level change history; each entry is also sealed into our hash chain
        # (governance.apps), so one verification covers both.
        auditlog.register(AIModel)
        auditlog.register(Consumer)
        auditlog.register(ModelVersion)
