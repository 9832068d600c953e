"""A fault asked for while the demo simulator runs (`manage.py simulate_fault`) reaches its canary
once, is said in its log and in the audit trail; requests left from an earlier run are dropped."""

from __future__ import annotations

import threading
import time
from io import StringIO

import pytest
from django.core.management import call_command

from governance.audit.models import AuditEvent
from monitoring.simulator import request_fault, take_requested_faults
from releases.management.commands.simulate import fault_requests_dir


def test_each_request_is_taken_once_in_order_and_unknown_ones_are_dropped(tmp_path):
    request_fault(tmp_path, "error_spike")
    request_fault(tmp_path, "latency_regression")
    (tmp_path / "1.fault").write_text("rm -rf /")  # not a fault: dropped, never run
    assert take_requested_faults(tmp_path) == ["error_spike", "latency_regression"]
    assert take_requested_faults(tmp_path) == [] and not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="unknown fault"):
        request_fault(tmp_path, "shutdown")


@pytest.mark.django_db(transaction=True)
def test_the_running_simulator_injects_a_requested_fault_and_audits_it(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.PROMETHEUS_URL = "http://127.0.0.1:9"  # scraped, not pushed: no model needed
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path / "router")}}
    request_fault(fault_requests_dir(), "quality_drop")  # left from an earlier run: not this run's
    out = StringIO()
    runner = threading.Thread(target=call_command, args=("simulate", "m", "--production", "1.0.0", "--canary",
                                                         "1.1.0", "--seconds", "4"), kwargs={"stdout": out})
    runner.start()
    time.sleep(1.5)
    call_command("simulate_fault", "error_spike", stdout=StringIO())
    runner.join(timeout=30)
    log = out.getvalue()
    assert "injected error_spike on the canary (requested)" in log and "quality_drop" not in log
    event = AuditEvent.objects.get(action="simulator.fault_injected")
    assert event.payload == {"fault": "error_spike", "version": "1.1.0"}
