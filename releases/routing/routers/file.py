"""The embedded default router: it records every split it is told, in files.

`<dir>/<model>.json` holds the split in force (what `read_back` returns); `<dir>/<model>.log.jsonl`
gets one line per `apply`, a re-apply of the same split included (marked `"changed": false`), so
the log is the record of what the data plane was told and when. A real data plane can also
follow the JSON file (a sidecar watching it, or a test).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from releases.routing.routers.base import (
    MODEL_NAME_RE,
    AppliedSplit,
    PermanentRouterError,
    Router,
    RouterError,
    Split,
    StaleSplitError,
    TransientRouterError,
)

# Errors that retrying cannot cure: the directory is wrong or not ours to write.
_PERMANENT_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP}
)


def _router_error(action: str, exc: OSError) -> RouterError:
    cls = PermanentRouterError if exc.errno in _PERMANENT_ERRNOS else TransientRouterError
    return cls(f"file router could not {action}: {exc}")


class FileRouter(Router):
    kind: ClassVar[str] = "file"

    def __init__(
        self, path_dir: str | os.PathLike[str], *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.path_dir = Path(path_dir)
        # The clock only stamps log lines; injectable so tests can pin it.
        self._clock = clock or (lambda: datetime.now(UTC))
        try:
            self.path_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _router_error(f"create {self.path_dir}", exc) from exc

    def state_path(self, model: str) -> Path:
        return self.path_dir / f"{_checked(model)}.json"

    def log_path(self, model: str) -> Path:
        return self.path_dir / f"{_checked(model)}.log.jsonl"

    def apply(self, split: Split) -> AppliedSplit:
        state = self.state_path(split.model)
        # Two workers applying splits of one model at once must not both pass the staleness
        # check and then overwrite each other: the compare-and-write runs under a file lock.
        with self._locked(split.model):
            current = self._read(state)
            if current is not None and current.order > split.order:
                raise StaleSplitError(
                    f"split generation {split.generation} of canary {split.canary_id} is older than the "
                    f"applied generation {current.generation} of canary {current.canary_id}"
                )
            if current is not None and current.order == split.order and current != split:
                raise PermanentRouterError(
                    f"generation {split.generation} of canary {split.canary_id} was already applied "
                    "with a different split"
                )
            changed = current != split
            if changed:
                self._write_atomically(state, split.to_dict())
            self._append_log(split, changed=changed)
        return AppliedSplit(split=split, changed=changed, location=str(state))

    def read_back(self, model: str) -> Split | None:
        return self._read(self.state_path(model))

    def _read(self, path: Path) -> Split | None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _router_error(f"read {path}", exc) from exc
        try:
            return Split.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            # os.replace means a reader never sees a half-written file, so this is damage from
            # outside: refuse to guess what the data plane is doing.
            raise PermanentRouterError(f"{path} does not hold a valid split: {exc}") from exc

    def _write_atomically(self, path: Path, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, sort_keys=True, indent=2).encode("utf-8") + b"\n"
        tmp_name = None
        try:
            # Same directory as the target: os.replace is atomic only within one file system.
            fd, tmp_name = tempfile.mkstemp(dir=self.path_dir, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, path)
            tmp_name = None
            self._fsync_dir()  # the rename itself survives a power cut only once the directory is synced
        except OSError as exc:
            raise _router_error(f"write {path}", exc) from exc
        finally:
            if tmp_name is not None:
                with suppress(OSError):
                    os.unlink(tmp_name)

    def _append_log(self, split: Split, *, changed: bool) -> None:
        path = self.log_path(split.model)
        line = json.dumps(
            {"applied_at": self._clock().isoformat(), "changed": changed, "split": split.to_dict()},
            sort_keys=True,
        )
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(line + "\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise _router_error(f"append to {path}", exc) from exc

    def _fsync_dir(self) -> None:
        fd = os.open(self.path_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextmanager
    def _locked(self, model: str) -> Iterator[None]:
        path = self.path_dir / f".{model}.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise _router_error(f"open the lock {path}", exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def _checked(model: str) -> str:
    # The name becomes part of a path: a register slug cannot climb out of the directory.
    if not isinstance(model, str) or not MODEL_NAME_RE.match(model):
        raise PermanentRouterError(f"{model!r} is not a register model name")
    return model
