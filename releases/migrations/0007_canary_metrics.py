"""The canary keeps the metric configuration its version had at initiation."""

from django.db import migrations, models


def copy_from_version(apps, schema_editor):
    Canary = apps.get_model("releases", "Canary")
    for canary in Canary.objects.select_related("version").iterator():
        Canary.objects.filter(pk=canary.pk).update(metrics=canary.version.metrics or {})


class Migration(migrations.Migration):
    dependencies = [("releases", "0006_canary_frozen_tier_owner")]

    operations = [
        migrations.AddField(model_name="canary", name="metrics", field=models.JSONField(default=dict)),
        migrations.RunPython(copy_from_version, migrations.RunPython.noop),
    ]
