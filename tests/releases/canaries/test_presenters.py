"""The canary pages' words for why a stage waits: one presenter function, table-tested."""

from __future__ import annotations

import pytest

from releases.canaries.presenters import about, explain_gate

ERR_INFO = {"required": 12460, "sample_size": {"canary": 760, "production": 75000}, "time_to_sufficiency_s": 18000}

CASES = [
    # (gate, status, info, detail, viewer roles, owns, expected text, expected action)
    ("error_rate", "insufficient", ERR_INFO, "", (), False,
     "needs about 11,700 more canary requests to judge it (760 of 12,460 so far), about 5.0 h at current traffic",
     "Nothing to do but wait about 5.0 h."),
    ("quality", "insufficient", {"required": 400, "sample_size": {"canary": 100}, "time_to_sufficiency_s": 30}, "",
     (), False, "needs about 300 more scored canary requests to judge it (100 of 400 so far), about 30 s at current "
                "traffic", "Nothing to do but wait about 30 s."),
    ("latency_p99", "insufficient", {"required": 1000, "sample_size": {"canary": 0}, "time_to_sufficiency_s": None},
     "", ("platform",), False, "no canary requests measured yet (1,000 needed)",
     "You can act (Platform): the canary gets no traffic: check that the router sends it its share "
     "(Routers page)."),
    ("latency_p99", "insufficient", {"required": 1000, "sample_size": {"canary": 0}, "time_to_sufficiency_s": None},
     "", ("model_owner",), True, "no canary requests measured yet (1,000 needed)",
     "Platform: the canary gets no traffic: check that the router sends it its share (Routers page)."),
    ("error_rate", "stale", {}, "metrics are 900 s old (limit 300 s)", ("mrm",), False,
     "no fresh metrics (metrics are 900 s old (limit 300 s))",
     "Platform: check the model's metric source; the canary waits until it reports again."),
    ("error_rate", "red", {}, "+0.400 pp", ("model_owner",), True, "worse than the promotion gate allows (+0.400 pp)",
     "You can act (Model owner or Platform): it cannot be promoted while this stays red: wait for "
     "more data, or roll the canary back."),
    ("error_rate", "red", {}, "+0.400 pp", ("model_owner",), False, "worse than the promotion gate allows (+0.400 pp)",
     "Model owner or Platform: it cannot be promoted while this stays red: wait for more data, or "
     "roll the canary back."),
    ("router_share", "red", {}, "canary served 9.00% of requests, configured 1%", ("platform",), False,
     "canary served 9.00% of requests, configured 1%",
     "You can act (Platform): check the router's configuration (Routers page); the stage waits until the "
     "split is right."),
    ("anomaly_alerts", "red", {}, "1 alert firing", ("on_call",), False, "1 alert firing",
     "You can act (On-call or Platform): look at the firing alerts; the stage waits until they stop."),
]


@pytest.mark.parametrize(("gate", "status", "info", "detail", "roles", "owns", "text", "action"), CASES)
def test_a_holding_gate_reads_in_words_with_who_acts(gate, status, info, detail, roles, owns, text, action):
    line = explain_gate(gate, status, info, detail, viewer_roles=roles, viewer_owns=owns)
    assert (line.text, line.action) == (text, action)
    assert "_" not in line.label + line.text + line.action  # no code names on the page


def test_a_green_gate_holds_nothing():
    assert explain_gate("error_rate", "green", ERR_INFO) is None


@pytest.mark.parametrize(("seconds", "words"), [(0, "about 1 s"), (40, "about 40 s"), (600, "about 10 min"),
                                                 (7200, "about 2.0 h"), (40000, "about 11 h")])
def test_waits_are_said_in_round_words(seconds, words):
    assert about(seconds) == words
