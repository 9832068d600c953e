"""The embedded launcher restarts a child that exits, with a growing backoff, and says so."""

from __future__ import annotations

import sys
import time

from canaryhub import launcher


def test_restart_delay_doubles_to_a_minute():
    assert [launcher.restart_delay(n) for n in (1, 2, 3, 4, 7, 20)] == [1, 2, 4, 8, 60, 60]


def test_a_crashed_child_is_restarted_after_its_backoff_and_the_log_says_so(capsys):
    crash = launcher.Child("worker", [sys.executable, "-c", "import sys; sys.exit(3)"])
    steady = launcher.Child("web", [sys.executable, "-c", "import time; time.sleep(30)"])
    env = {"PATH": ""}
    try:
        for child in (crash, steady):
            child.start(env)
        crash.process.wait(timeout=10)
        t0 = time.monotonic()
        launcher.supervise_once([crash, steady], env, now=t0)
        assert crash.restart_at == t0 + 1 and steady.restart_at is None
        launcher.supervise_once([crash, steady], env, now=t0 + 0.5)  # still in its backoff
        assert crash.restarts == 0
        launcher.supervise_once([crash, steady], env, now=t0 + 1)
        assert crash.restarts == 1 and crash.restart_at is None
        crash.process.wait(timeout=10)
        launcher.supervise_once([crash, steady], env, now=time.monotonic())
        assert crash.crashes_in_a_row == 2 and crash.restart_at - time.monotonic() > 1.5  # doubled
        assert steady.returncode is None and steady.restarts == 0
    finally:
        for child in (crash, steady):
            child.kill_group()
    out = capsys.readouterr().out
    assert "worker exited with code 3" in out and "restarting it in 1 s" in out and "restarting it in 2 s" in out
    assert "restarted worker (pid" in out and "restart #1" in out


def test_the_simulator_takes_free_ports_so_a_second_copy_starts_beside_the_first(db, settings, tmp_path):
    import socket
    from io import StringIO

    from django.core.management import call_command

    settings.PROMETHEUS_URL = "http://127.0.0.1:9"  # scraped, not pushed: no model needed
    settings.CANARYHUB_ROUTERS = {"file": {"path_dir": str(tmp_path)}}
    assert settings.SIMULATOR_PRODUCTION_PORT == settings.SIMULATOR_CANARY_PORT == 0
    held = []
    try:
        for port in (9101, 9102):  # the ports an older copy used: taken
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            held.append(sock)
        out = StringIO()
        call_command("simulate", "m", "--production", "1.0.0", "--canary", "1.1.0", "--seconds", "0.2", stdout=out)
    finally:
        for sock in held:
            sock.close()
    assert "production 1.0.0 on :" in out.getvalue() and ":9101," not in out.getvalue()
