"""`make run`'s ready block: one block with the URL, every demo user, the clock, what is
simulated and how to stop."""

from canaryhub.launcher import ready_block


def test_the_ready_block_names_the_url_all_users_the_clock_the_simulation_and_how_to_stop():
    text = "\n".join(ready_block("http://127.0.0.1:8000/", "pw", {"CANARYHUB_CLOCK_SPEED": "1440"}))
    assert "http://127.0.0.1:8000/" in text and "'pw'" in text
    for user in ("owner", "platform", "mrm", "governance", "risk", "oncall", "auditor"):
        assert f"  {user} " in text
    assert "1440x faster" in text and "72,000 requests/s" in text and "Ctrl-C" in text
    quiet = "\n".join(ready_block("http://h/", "pw", {"CANARYHUB_SIMULATE": "0"}))
    assert "real time" in quiet and "Simulated: nothing" in quiet
