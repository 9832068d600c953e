from django.db import migrations

from governance.audit.services import protection_install_sql, protection_remove_sql

ROLES = ["model_owner", "platform", "mrm", "ai_governance", "risk_officer", "on_call", "auditor", "service_account"]


def create_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def protect(apps, schema_editor):
    for statement in protection_install_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement)


def unprotect(apps, schema_editor):
    for statement in protection_remove_sql(schema_editor.connection.vendor):
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [
        migrations.RunPython(create_roles, migrations.RunPython.noop),
        migrations.RunPython(protect, unprotect),
    ]
