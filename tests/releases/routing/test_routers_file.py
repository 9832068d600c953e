import json
import os
import threading
from datetime import UTC, datetime

import pytest

from releases.routing.routers import (
    AppliedSplit,
    PermanentRouterError,
    Router,
    RouterError,
    Split,
    StaleSplitError,
    TransientRouterError,
    get_router,
    register_router,
    router_kinds,
)
from releases.routing.routers.file import FileRouter

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def split(**overrides):
    fields = {
        "model": "support-bot",
        "production_version": "1.4.0",
        "canary_version": "1.5.0",
        "percent": 5,
        "canary_id": 7,
        "generation": 2,
    }
    fields.update(overrides)
    return Split(**fields)


@pytest.fixture
def router(tmp_path):
    return FileRouter(tmp_path / "router", clock=lambda: NOW)


def log_lines(router, model="support-bot"):
    return [json.loads(line) for line in router.log_path(model).read_text().splitlines()]


# --- Split ---------------------------------------------------------------------------------------


def test_split_round_trips_through_json():
    s = split(strategy="region", values=["eu-west", "eu-north"])
    assert s.values == ("eu-west", "eu-north")
    assert s.to_dict() == {
        "schema": 1,
        "model": "support-bot",
        "production_version": "1.4.0",
        "canary_version": "1.5.0",
        "percent": 5,
        "segmentation": {"strategy": "region", "values": ["eu-west", "eu-north"]},
        "canary_id": 7,
        "generation": 2,
    }
    assert Split.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert hash(s) == hash(Split.from_dict(s.to_dict()))


def test_splits_are_equal_by_value():
    assert split() == split()
    assert split() != split(percent=10)
    assert split() != split(generation=3)
    assert split(strategy="cohort", values=["a", "b"]) != split(strategy="cohort", values=["b", "a"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"percent": -1},
        {"percent": 101},
        {"percent": 5.0},
        {"percent": True},
        {"percent": "5"},
        {"generation": -1},
        {"generation": 1.5},
        {"canary_id": -1},
        {"canary_id": None},
        {"model": "../etc/passwd"},
        {"model": "Support Bot"},
        {"model": ""},
        {"production_version": ""},
        {"canary_version": None},
        {"strategy": "geo", "values": ["x"]},
        {"strategy": "random", "values": ["x"]},
        {"strategy": "region", "values": []},
        {"strategy": "region", "values": ["eu", "eu"]},
        {"strategy": "region", "values": ["eu", ""]},
        {"strategy": "region", "values": ["eu", 3]},
    ],
)
def test_invalid_splits_are_refused(overrides):
    with pytest.raises(ValueError):
        split(**overrides)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("generation"),
        lambda d: d.update(extra=1),
        lambda d: d.update(schema=2),
        lambda d: d.update(segmentation={"strategy": "random"}),
        lambda d: d.update(segmentation={"strategy": "cohort", "values": "beta"}),
        lambda d: d.update(segmentation=None),
        lambda d: d.update(percent=500),
    ],
)
def test_from_dict_refuses_anything_else(mutate):
    data = split().to_dict()
    mutate(data)
    with pytest.raises(ValueError):
        Split.from_dict(data)


def test_from_dict_refuses_a_non_object():
    with pytest.raises(ValueError):
        Split.from_dict([1, 2])


# --- FileRouter ----------------------------------------------------------------------------------


def test_apply_writes_the_split_and_reads_it_back(router):
    s = split()
    applied = router.apply(s)
    assert applied == AppliedSplit(split=s, changed=True, location=str(router.state_path("support-bot")))
    assert json.loads(router.state_path("support-bot").read_text()) == s.to_dict()
    assert router.read_back("support-bot") == s


def test_read_back_of_a_model_never_told_is_none(router):
    assert router.read_back("support-bot") is None


def test_the_write_is_atomic_and_leaves_no_temporary_files(router, monkeypatch):
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        # At the moment of the rename the new content is complete in a file in the same directory.
        replaced.append((os.path.dirname(src), json.loads(open(src).read())))
        real_replace(src, dst)

    monkeypatch.setattr("releases.routing.routers.file.os.replace", spy)
    router.apply(split())
    assert replaced == [(str(router.path_dir), split().to_dict())]
    names = sorted(p.name for p in router.path_dir.iterdir())
    assert names == [".support-bot.lock", "support-bot.json", "support-bot.log.jsonl"]


def test_a_failed_write_keeps_the_previous_split(router, monkeypatch):
    router.apply(split(generation=1))

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("releases.routing.routers.file.os.fsync", full_disk)
    with pytest.raises(TransientRouterError):
        router.apply(split(generation=2, percent=10))
    monkeypatch.undo()
    assert router.read_back("support-bot") == split(generation=1)
    assert not [p for p in router.path_dir.iterdir() if p.name.endswith(".tmp")]


def test_reapplying_the_same_split_is_harmless_and_logged(router):
    s = split()
    first = router.apply(s)
    mtime = router.state_path("support-bot").stat().st_mtime_ns
    second = router.apply(s)
    assert first.changed and not second.changed
    assert router.read_back("support-bot") == s
    assert router.state_path("support-bot").stat().st_mtime_ns == mtime
    assert [(line["changed"], line["split"]) for line in log_lines(router)] == [
        (True, s.to_dict()), (False, s.to_dict()),
    ]


def test_every_applied_split_is_logged_in_order(router):
    splits = [split(generation=g, percent=p) for g, p in [(1, 1), (2, 5), (3, 10), (4, 0)]]
    for s in splits:
        router.apply(s)
    lines = log_lines(router)
    assert [line["split"] for line in lines] == [s.to_dict() for s in splits]
    assert {line["applied_at"] for line in lines} == {NOW.isoformat()}
    assert router.read_back("support-bot") == splits[-1]


def test_a_stale_generation_is_refused_and_changes_nothing(router):
    router.apply(split(generation=5, percent=25))
    with pytest.raises(StaleSplitError) as exc:
        router.apply(split(generation=4, percent=10))
    assert not exc.value.transient and isinstance(exc.value, PermanentRouterError)
    assert router.read_back("support-bot") == split(generation=5, percent=25)
    assert len(log_lines(router)) == 1


def test_a_different_split_under_an_applied_generation_is_refused(router):
    router.apply(split(generation=3, percent=10))
    with pytest.raises(PermanentRouterError, match="already applied with a different split"):
        router.apply(split(generation=3, percent=25))
    assert router.read_back("support-bot").percent == 10


def test_a_later_canary_supersedes_an_earlier_one_from_generation_zero(router):
    router.apply(split(canary_id=7, generation=9, percent=0))
    router.apply(split(canary_id=8, generation=0, percent=1, canary_version="1.5.1"))
    assert router.read_back("support-bot").canary_id == 8
    with pytest.raises(StaleSplitError):
        router.apply(split(canary_id=7, generation=10, percent=5))


def test_a_zero_percent_split_is_applied(router):
    router.apply(split(generation=1, percent=25))
    applied = router.apply(split(generation=2, percent=0))
    assert applied.changed
    assert router.read_back("support-bot").percent == 0


def test_models_are_kept_apart(router):
    router.apply(split(model="support-bot"))
    router.apply(split(model="fraud-scorer", generation=1))
    assert router.read_back("support-bot").model == "support-bot"
    assert router.read_back("fraud-scorer").generation == 1


@pytest.mark.parametrize("name", ["../outside", "a/b", "", "UPPER", ".hidden"])
def test_read_back_refuses_names_that_are_not_model_names(router, name):
    with pytest.raises(PermanentRouterError):
        router.read_back(name)


@pytest.mark.parametrize("content", ["{not json", "[]", json.dumps({"model": "support-bot"})])
def test_a_damaged_state_file_is_a_permanent_error(router, content):
    router.state_path("support-bot").write_text(content)
    with pytest.raises(PermanentRouterError, match="does not hold a valid split"):
        router.read_back("support-bot")
    with pytest.raises(PermanentRouterError):
        router.apply(split())


def test_an_unwritable_directory_is_a_permanent_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PermanentRouterError):
        FileRouter(blocker / "router")


def test_concurrent_applies_keep_the_newest(tmp_path):
    # Many workers racing with splits of increasing generation: whatever the interleaving, the
    # newest wins, older ones are refused, and no apply is lost or torn.
    router = FileRouter(tmp_path)
    errors: list[Exception] = []

    def push(generation):
        try:
            router.apply(split(generation=generation, percent=generation % 101))
        except StaleSplitError:
            pass
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=push, args=(g,)) for g in range(1, 41)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert router.read_back("support-bot").generation == 40
    generations = [line["split"]["generation"] for line in log_lines(router)]
    assert generations == sorted(generations) and generations[-1] == 40


# --- registry ------------------------------------------------------------------------------------


def test_get_router_builds_the_file_router(tmp_path):
    router = get_router("file", path_dir=tmp_path)
    assert isinstance(router, FileRouter) and isinstance(router, Router)
    assert "file" in router_kinds()


def test_get_router_refuses_unknown_kinds_and_bad_configuration(tmp_path):
    with pytest.raises(PermanentRouterError, match="no router kind 'carrier-pigeon'"):
        get_router("carrier-pigeon")
    with pytest.raises(PermanentRouterError, match="bad configuration"):
        get_router("file", path=tmp_path)


def test_register_router_adds_a_kind(monkeypatch):
    class MemoryRouter(Router):
        kind = "memory"

        def __init__(self):
            self.applied: dict[str, Split] = {}

        def apply(self, split):
            changed = self.applied.get(split.model) != split
            self.applied[split.model] = split
            return AppliedSplit(split=split, changed=changed, location="memory")

        def read_back(self, model):
            return self.applied.get(model)

    monkeypatch.setattr("releases.routing.routers.base._REGISTERED", {})
    register_router("memory", MemoryRouter)
    assert router_kinds() == ("file", "memory", "nginx", "webhook")
    router = get_router("memory")
    assert router.apply(split()).changed and router.read_back("support-bot") == split()


def test_router_errors_say_whether_to_retry():
    assert TransientRouterError("x").transient
    assert not PermanentRouterError("x").transient
    assert issubclass(StaleSplitError, RouterError)
