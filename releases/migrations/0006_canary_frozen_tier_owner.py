"""The canary keeps the risk tier and owner its model had at initiation."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def copy_from_model(apps, schema_editor):
    Canary = apps.get_model("releases", "Canary")
    for canary in Canary.objects.select_related("model").iterator():
        Canary.objects.filter(pk=canary.pk).update(risk_tier=canary.model.risk_tier, owner_id=canary.model.owner_id)
    if schema_editor.connection.vendor == "postgresql":
        # Run the deferred foreign-key checks now: ALTER TABLE below refuses pending trigger events.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


class Migration(migrations.Migration):
    dependencies = [
        ("releases", "0005_routerconfig"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="canary",
            name="risk_tier",
            field=models.CharField(
                choices=[("low", "Low"), ("medium", "Medium"), ("high", "High")], default="", max_length=10
            ),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="canary",
            name="owner",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.RunPython(copy_from_model, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="canary",
            name="owner",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to=settings.AUTH_USER_MODEL
            ),
        ),
    ]
