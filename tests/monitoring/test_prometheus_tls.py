"""TLS to Prometheus is verified unless the deployment opts out explicitly."""

from __future__ import annotations

from monitoring.providers import PrometheusProvider


def test_tls_is_verified_by_default(settings):
    settings.PROMETHEUS_CA_BUNDLE, settings.PROMETHEUS_TLS_INSECURE = "", False
    assert PrometheusProvider("https://prometheus.example.test").client._session.verify is True


def test_a_ca_bundle_is_used_when_set(settings, tmp_path):
    bundle = tmp_path / "ca.pem"
    settings.PROMETHEUS_CA_BUNDLE, settings.PROMETHEUS_TLS_INSECURE = str(bundle), False
    assert PrometheusProvider("https://prometheus.example.test").client._session.verify == str(bundle)


def test_verification_is_off_only_by_the_explicit_opt_out(settings):
    settings.PROMETHEUS_CA_BUNDLE, settings.PROMETHEUS_TLS_INSECURE = "", True
    assert PrometheusProvider("https://prometheus.example.test").client._session.verify is False
