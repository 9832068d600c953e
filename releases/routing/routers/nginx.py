"""The nginx router: the split becomes an nginx include, validated with `nginx -t` and reloaded.

For each model it writes two files (atomically, under a lock):

- `<conf_dir>/http/<model>.conf`, for the `http` context: the production and canary upstreams,
  a `split_clients` on `"c<canary_id>:<user id header>"` whose canary part comes first (so the
  canary is the bottom `percent` of the hash space and grows from there: a user in the canary at
  5 % stays in it at 10 %), `map`s for the segmentation (cohort, region, account tier headers)
  and a users-without-an-id map, combined into `$canaryhub_<model>_upstream`. releases.routing.assignment
  computes the same hash, so the assignment API and nginx agree on every user.
- `<conf_dir>/server/<model>.conf`, for a `server` context: `location = /__canaryhub/split/<model>`
  answering the applied split as JSON (how `read_back` learns what nginx *serves*, not what
  was written), plus, when configured, the model's traffic location proxying to the upstream.

The main nginx configuration includes them once:

    http {
        include <conf_dir>/http/*.conf;
        server { listen 127.0.0.1:8080; include <conf_dir>/server/*.conf; ... }
    }

`apply` swaps the new files in, runs `nginx -t`; on failure it puts the previous files back and
raises PermanentRouterError with nginx's message (the previous configuration keeps serving);
on success it reloads and polls the read-back location until nginx answers the new generation.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar

from releases.routing.assignment import hash_key
from releases.routing.routers import destinations
from releases.routing.routers.base import (
    MODEL_NAME_RE,
    AppliedSplit,
    PermanentRouterError,
    Router,
    Split,
    StaleSplitError,
    TransientRouterError,
)

HEADER_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
SERVER_RE = re.compile(r"^[A-Za-z0-9.:\[\]_-]{1,255}( [a-z_=0-9 ]{1,100})?$")  # host:port [max_fails=1 …]
LOCATION_RE = re.compile(r"^/[A-Za-z0-9._~/-]{0,200}$")
# Segment values go into nginx `map` keys: a closed alphabet keeps quoting trivially safe.
SEGMENT_VALUE_RE = re.compile(r"^[A-Za-z0-9 ._:@/+-]{1,100}$")
MAP_SPECIAL = {"default", "hostnames", "include", "volatile"}
READBACK_PREFIX = "/__canaryhub/split/"
MARKER = "# canaryhub-split: "


def _header_var(header: str) -> str:
    if not HEADER_RE.match(header):
        raise PermanentRouterError(f"{header!r} is not a valid header name")
    return "$http_" + header.lower().replace("-", "_")


def _nginx_json(split: Split) -> str:
    """The split as a single-quoted nginx string: `$` and `'` become JSON \\u escapes (so nginx
    neither interpolates nor ends the string), then backslashes are doubled for nginx's parser."""
    text = json.dumps(split.to_dict(), sort_keys=True, ensure_ascii=True)
    text = text.replace("$", "\\u0024").replace("'", "\\u0027")
    return "'" + text.replace("\\", "\\\\") + "'"


def _map_key(value: str) -> str:
    if not SEGMENT_VALUE_RE.match(value):
        raise PermanentRouterError(
            f"segment value {value!r} cannot be routed by nginx: use letters, digits, spaces and ._:@/+-"
        )
    key = value.lower()  # nginx lower-cases map input; keys compare as lower case
    if key in MAP_SPECIAL:
        key = "\\" + key
    return f'"{key}"'


def render(
    split: Split,
    *,
    production: Sequence[str],
    canary: Sequence[str],
    user_header: str = "X-User-Id",
    segment_headers: Mapping[str, str] | None = None,
    location: str | None = None,
) -> tuple[str, str]:
    """(http include, server include) for one split. Pure: unit-tested without nginx."""
    headers = {"cohort": "X-Cohort", "region": "X-Region", "account_tier": "X-Account-Tier", **(segment_headers or {})}
    m = split.model.replace("-", "_")
    user_var = _header_var(user_header)
    for server in (*production, *canary):
        if not SERVER_RE.match(server):
            raise PermanentRouterError(f"{server!r} is not an upstream server address")
    if not production or not canary:
        raise PermanentRouterError(f"model {split.model}: both production and canary upstream servers are needed")
    lines = [
        f"{MARKER}{json.dumps(split.to_dict(), sort_keys=True)}",
        "# Written by CanaryHub: do not edit; the next push replaces it.",
        f"upstream canaryhub_{m}_production {{",
        *(f"    server {s};" for s in production),
        "}",
        f"upstream canaryhub_{m}_canary {{",
        *(f"    server {s};" for s in canary),
        "}",
    ]
    # split_clients treats "0%" as "*" (catch-all): 0 % and 100 % are written without a split.
    key = hash_key(split.canary_id, "${" + user_var[1:] + "}")
    lines.append(f'split_clients "{key}" $canaryhub_{m}_bucket {{')
    if split.percent >= 100:
        lines.append("    * canary;")
    elif split.percent <= 0:
        lines.append("    * production;")
    else:
        # The canary part first: its boundary starts at hash 0 and only grows with the percent.
        lines += [f"    {split.percent}% canary;", "    * production;"]
    lines.append("}")
    lines += [f"map {user_var} $canaryhub_{m}_user {{", '    "" 0;', "    default 1;", "}"]
    if split.strategy == "random":
        lines += [f"map {user_var} $canaryhub_{m}_segment {{", "    default 1;", "}"]
    else:
        lines += [f"map {_header_var(headers[split.strategy])} $canaryhub_{m}_segment {{", "    default 0;"]
        lines += [f"    {_map_key(v)} 1;" for v in split.values]
        lines.append("}")
    lines += [
        f'map "$canaryhub_{m}_user$canaryhub_{m}_segment$canaryhub_{m}_bucket" $canaryhub_{m}_upstream {{',
        f"    default canaryhub_{m}_production;",
        f'    "11canary" canaryhub_{m}_canary;',
        "}",
        f'map "$canaryhub_{m}_user$canaryhub_{m}_segment$canaryhub_{m}_bucket" $canaryhub_{m}_variant {{',
        "    default production;",
        '    "11canary" canary;',
        "}",
    ]
    server = [
        f"{MARKER}{json.dumps(split.to_dict(), sort_keys=True)}",
        f"location = {READBACK_PREFIX}{split.model} {{",
        "    default_type application/json;",
        "    add_header Cache-Control no-store always;",
        f"    return 200 {_nginx_json(split)};",
        "}",
    ]
    if location:
        if not LOCATION_RE.match(location):
            raise PermanentRouterError(f"{location!r} is not a location prefix")
        server += [
            f"location {location} {{",
            f"    proxy_pass http://$canaryhub_{m}_upstream;",
            f"    proxy_set_header X-CanaryHub-Variant $canaryhub_{m}_variant;",
            "}",
        ]
    return "\n".join(lines) + "\n", "\n".join(server) + "\n"


class NginxRouter(Router):
    kind: ClassVar[str] = "nginx"

    def __init__(
        self,
        *,
        conf_dir: str | os.PathLike[str],
        main_conf: str | os.PathLike[str],
        upstreams: Mapping[str, Mapping[str, Any]],
        readback_url: str = "",
        nginx_bin: str = "nginx",
        pid_file: str | os.PathLike[str] | None = None,
        user_header: str = "X-User-Id",
        segment_headers: Mapping[str, str] | None = None,
        confirm_timeout_s: float = 10.0,
        command_timeout_s: float = 15.0,
        drain_timeout_s: float = 5.0,
    ) -> None:
        self.conf_dir = Path(conf_dir)
        self.main_conf = Path(main_conf)
        self.upstreams = {str(k): dict(v) for k, v in upstreams.items()}
        self.readback_url = readback_url.rstrip("/")
        if self.readback_url:
            destinations.check_url(self.readback_url, resolve=False)
        self.nginx_bin = nginx_bin
        # With a pid file we reload by signal (no second nginx process parsing the config).
        self.pid_file = Path(pid_file) if pid_file else None
        self.user_header = user_header
        self.segment_headers = dict(segment_headers or {})
        self.confirm_timeout_s = confirm_timeout_s
        self.command_timeout_s = command_timeout_s
        self.drain_timeout_s = drain_timeout_s
        _header_var(user_header)
        for header in self.segment_headers.values():
            _header_var(header)
        try:
            (self.conf_dir / "http").mkdir(parents=True, exist_ok=True)
            (self.conf_dir / "server").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermanentRouterError(f"nginx router cannot create {self.conf_dir}: {exc}") from exc

    # --- paths ------------------------------------------------------------------------------------
    def http_path(self, model: str) -> Path:
        return self.conf_dir / "http" / f"{_checked(model)}.conf"

    def server_path(self, model: str) -> Path:
        return self.conf_dir / "server" / f"{_checked(model)}.conf"

    # --- Router -----------------------------------------------------------------------------------
    def apply(self, split: Split) -> AppliedSplit:
        cfg = self.upstreams.get(split.model)
        if cfg is None:
            raise PermanentRouterError(f"the nginx router has no upstreams configured for model {split.model}")
        http_text, server_text = render(
            split, production=list(cfg.get("production") or []), canary=list(cfg.get("canary") or []),
            user_header=self.user_header, segment_headers=self.segment_headers, location=cfg.get("location"),
        )
        with self._locked():
            current = self._written(split.model)
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
            old_workers: set[int] = set()
            if changed or self._served(split.model) != split:
                # (Unchanged but not served: a crash between write and reload, or a reload
                # nginx refused. Reload again rather than report success.)
                if changed:
                    self._swap_in(split.model, http_text, server_text)
                old_workers = self._workers()
                self._reload()
            self._confirm(split)
            self._drain(old_workers)
        return AppliedSplit(split=split, changed=changed, location=str(self.http_path(split.model)))

    def read_back(self, model: str) -> Split | None:
        """What nginx serves when a read-back URL is configured, else what the live include says."""
        if self.readback_url:
            return self._served(model)
        return self._written(model)

    def manual_override(self, model: str) -> str:
        return (
            f"send all traffic of {model} to production by hand: in {self.http_path(model)} replace the "
            f"split_clients body with '* production;', then run `{self.nginx_bin} -t -c {self.main_conf}` and "
            f"`{self.nginx_bin} -s reload -c {self.main_conf}`"
        )

    # --- internals --------------------------------------------------------------------------------
    def _served(self, model: str) -> Split | None:
        if not self.readback_url:
            return self._written(model)
        url = f"{self.readback_url}{READBACK_PREFIX}{_checked(model)}"
        try:
            with destinations.open_checked(url, timeout=2.0) as response:
                body = response.read(64 * 1024)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise TransientRouterError(f"nginx read-back {url} answered {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise TransientRouterError(f"nginx read-back {url} failed: {exc}") from exc
        try:
            return Split.from_dict(json.loads(body))
        except (ValueError, TypeError) as exc:
            raise PermanentRouterError(f"nginx read-back {url} is not a split: {exc}") from exc

    def _written(self, model: str) -> Split | None:
        path = self.http_path(model)
        try:
            first = path.read_text(encoding="utf-8").split("\n", 1)[0]
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransientRouterError(f"nginx router cannot read {path}: {exc}") from exc
        if not first.startswith(MARKER):
            raise PermanentRouterError(f"{path} was not written by CanaryHub (no split marker)")
        try:
            return Split.from_dict(json.loads(first[len(MARKER):]))
        except (ValueError, TypeError) as exc:
            raise PermanentRouterError(f"{path} holds a damaged split marker: {exc}") from exc

    def _swap_in(self, model: str, http_text: str, server_text: str) -> None:
        targets = [(self.http_path(model), http_text), (self.server_path(model), server_text)]
        previous: list[tuple[Path, bytes | None]] = []
        for path, _ in targets:
            try:
                previous.append((path, path.read_bytes()))
            except FileNotFoundError:
                previous.append((path, None))
        try:
            for path, text in targets:
                _write_atomically(path, text.encode("utf-8"))
            ok, message = self._run([self.nginx_bin, "-t", "-q", "-e", "stderr", "-c", str(self.main_conf)])
        except OSError as exc:
            self._restore(previous)
            raise TransientRouterError(f"nginx router could not write its include: {exc}") from exc
        if not ok:
            self._restore(previous)
            raise PermanentRouterError(f"nginx -t refused the configuration (previous one kept): {message}")

    def _restore(self, previous: list[tuple[Path, bytes | None]]) -> None:
        for path, data in previous:
            with suppress(OSError):
                if data is None:
                    path.unlink(missing_ok=True)
                else:
                    _write_atomically(path, data)

    def _reload(self) -> None:
        if self.pid_file is not None:
            try:
                os.kill(int(self.pid_file.read_text().strip()), signal.SIGHUP)
                return
            except (OSError, ValueError) as exc:
                raise TransientRouterError(f"could not signal nginx (pid file {self.pid_file}): {exc}") from exc
        ok, message = self._run([self.nginx_bin, "-e", "stderr", "-c", str(self.main_conf), "-s", "reload"])
        if not ok:
            raise TransientRouterError(f"nginx -s reload failed: {message}")

    def _confirm(self, split: Split) -> None:
        """Wait until nginx serves this split (a reload is asynchronous: new workers start, old
        ones drain). Without a read-back URL the written file is all we can check."""
        if not self.readback_url:
            return
        deadline = time.monotonic() + self.confirm_timeout_s
        delay = 0.002
        seen: Split | None = None
        while True:
            try:
                seen = self._served(split.model)
            except TransientRouterError:
                seen = None
            # Equality, not just order: a worker of the previous configuration may still answer
            # a split of the same order (a re-created model, a restored file).
            if seen is not None and (seen == split or seen.order > split.order):
                return
            if time.monotonic() > deadline:
                raise TransientRouterError(
                    f"nginx did not serve generation {split.generation} within {self.confirm_timeout_s:.0f}s "
                    f"(serves {seen.to_dict() if seen else 'nothing'})"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.02)

    def _master_pid(self) -> int | None:
        if self.pid_file is None:
            return None
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _workers(self) -> set[int]:
        """The master's worker processes (local nginx with a pid file only; Linux /proc)."""
        master = self._master_pid()
        if master is None:
            return set()
        workers = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # pid (comm) state ppid …; comm may hold spaces, so split after the last ')'.
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields and int(fields[1]) == master:
                workers.add(int(stat.parent.name))
        return workers

    def _drain(self, old_workers: set[int]) -> None:
        """Wait until the workers of the previous configuration have exited. nginx starts the new
        workers, sleeps 100 ms, then tells the old ones to stop: until then both accept new
        connections, so a read-back answered by a new worker does not yet mean that every new
        request gets the new split. Bounded: an old worker finishing a long response keeps only
        that response; it stopped accepting when told to quit."""
        deadline = time.monotonic() + self.drain_timeout_s
        while old_workers and time.monotonic() < deadline:
            old_workers &= self._workers()
            if old_workers:
                time.sleep(0.005)

    def _run(self, argv: list[str]) -> tuple[bool, str]:
        try:
            done = subprocess.run(  # noqa: S603 - argv from configuration, no shell
                argv, capture_output=True, text=True, timeout=self.command_timeout_s, check=False
            )
        except FileNotFoundError as exc:
            raise PermanentRouterError(f"nginx binary not found: {argv[0]}") from exc
        except subprocess.TimeoutExpired as exc:
            raise TransientRouterError(f"{' '.join(argv)} timed out") from exc
        message = (done.stderr or done.stdout).strip()
        return done.returncode == 0, message

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # One lock for the whole directory: `nginx -t` checks every model's include at once, so
        # two models' pushes must not interleave their swap-test-restore.
        path = self.conf_dir / ".lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _write_atomically(path: Path, data: bytes) -> None:
    # Same directory and a name the `*.conf` include glob does not match.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def _checked(model: str) -> str:
    if not isinstance(model, str) or not MODEL_NAME_RE.match(model):
        raise PermanentRouterError(f"{model!r} is not a register model name")
    return model
