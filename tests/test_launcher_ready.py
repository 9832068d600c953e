"""`make run`'s ready block: one block with the URL, every demo user, the clock, what is
simulated and how to stop."""

from canaryhub.launcher import DEMO_LOGINS, ready_block
from governance.access.labels import role_label
from releases.management.commands.seed_demo import DEMO_USERS


def test_the_ready_block_names_the_url_all_users_the_clock_the_simulation_and_how_to_stop():
    text = "\n".join(ready_block("http://127.0.0.1:8000/", "pw", {"CANARYHUB_CLOCK_SPEED": "1440"}))
    assert "http://127.0.0.1:8000/" in text and "'pw'" in text
    for user in ("owner", "platform", "mrm", "governance", "risk", "oncall", "auditor"):
        assert f"  {user} " in text
    assert "1440x faster" in text and "72,000 requests/s" in text and "Ctrl-C" in text
    quiet = "\n".join(ready_block("http://h/", "pw", {"CANARYHUB_SIMULATE": "0"}))
    assert "real time" in quiet and "Simulated: nothing" in quiet


def test_a_line_every_celery_child_prints_alike_is_shown_once():
    from canaryhub import launcher

    launcher._said_once.clear()
    hostname = "No hostname was supplied. Reverting to default 'localhost'"
    assert launcher.first_time(hostname) and not launcher.first_time(hostname)
    assert launcher.first_time("User information: uid=0 euid=0 gid=0 egid=0")
    assert not launcher.first_time("User information: uid=0 euid=0 gid=0 egid=0")
    assert launcher.first_time("[tasks] evaluate") and launcher.first_time("[tasks] evaluate")  # others always
    assert not launcher.first_time("") and not launcher.first_time("   ")


def test_the_ready_block_names_each_users_role_as_the_pages_do():
    roles = {username: role for username, role, *_ in DEMO_USERS}
    assert [name for name, _ in DEMO_LOGINS] == list(roles)
    assert [label for _, label in DEMO_LOGINS] == [role_label(roles[name]) for name, _ in DEMO_LOGINS]
    text = "\n".join(ready_block("http://h/", "pw", {}))
    assert "  mrm         Model risk (MRM)" in text and "  oncall      On-call" in text
