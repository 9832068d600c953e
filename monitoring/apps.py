from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring: metrics, evaluations, heartbeat"

    def ready(self) -> None:
        # Local: Django imports apps.py before the models can be loaded.
        from canaryhub import metrics
        from monitoring import metrics as monitor_metrics

        metrics.on_scrape(monitor_metrics.refresh)
        metrics.on_scrape(monitor_metrics.rollbacks_refresh)
