"""The simulator's metrics server treats a scraper hanging up as normal: no traceback on stderr.

A traceback printed from a server thread is not only noise: on Python 3.11 formatting one parses
source with `ast` while other threads may be doing the same, so the quiet path matters.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr

from monitoring.simulator import _QuietServer


def _error_output(exc: BaseException) -> str:
    server = _QuietServer(("127.0.0.1", 0), object)  # the handler is never called here
    try:
        buf = io.StringIO()
        with redirect_stderr(buf):
            try:
                raise exc
            except BaseException:
                server.handle_error(None, ("127.0.0.1", 1))
        return buf.getvalue()
    finally:
        server.server_close()


def test_a_scraper_hanging_up_prints_nothing():
    assert _error_output(BrokenPipeError(32, "Broken pipe")) == ""
    assert _error_output(ConnectionResetError(104, "Connection reset by peer")) == ""


def test_other_errors_are_still_reported():
    assert "ValueError: boom" in _error_output(ValueError("boom"))
