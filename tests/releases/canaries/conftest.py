from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from monitoring.simulator import Behaviour, Simulator
from tests.harness.prometheus import PrometheusServer

# One simulated model per integration scenario, so that a fault injected in one test never
# leaks into another's metrics (Prometheus keeps its data for the session).
SCENARIOS = ("sim-healthy", "sim-fault", "sim-deadman", "sim-watch")


@pytest.fixture(scope="session")
def live_metrics():
    """The simulator's model servers on loopback and a real Prometheus scraping them every
    second. Fails (does not skip) when the prometheus binary is missing."""
    router_dir = Path(tempfile.mkdtemp(prefix="canaryhub-sim-router-"))
    sims: dict[str, Simulator] = {}
    for i, name in enumerate(SCENARIOS):
        # A high virtual request rate: gates need thousands of canary requests at 1 %.
        sim = Simulator(name, "1.0.0", "1.1.0", rps=300_000, router_dir=router_dir, seed=10 + i,
                        production_behaviour=Behaviour(error_rate=0.0005),
                        canary_behaviour=Behaviour(error_rate=0.0005))
        sim.start(step_s=0.2)
        sims[name] = sim
    prometheus = PrometheusServer([t for s in sims.values() for t in s.targets()]).start()
    try:
        yield {"prometheus": prometheus, "sims": sims, "router_dir": router_dir}
    finally:
        prometheus.stop()
        for sim in sims.values():
            sim.stop()
