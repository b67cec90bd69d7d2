"""What the web UI may touch and who may reach it.

The toolbox reads datasets and writes models on the machine it runs on, so the app:
- binds 127.0.0.1 unless told otherwise, and refuses a non-loopback host without a password
  (`--auth-file FILE`, recommended: the password stays out of the process list; `--auth USER:PASS`;
  or the TOOLBOX_AUTH environment variable);
- only reads paths typed into the UI that lie under the workspace or a `--data-dir` folder
  (default extra folder: /home/aistudio when it exists, where AI Studio mounts datasets);
- turns Gradio's analytics off unless the user set GRADIO_ANALYTICS_ENABLED themselves (these
  machines are often offline, and users may not want telemetry).
"""
from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from ..errors import UsageError

ENV_AUTH = "TOOLBOX_AUTH"
WORKSPACE_NAME = re.compile(r"[^\W][\w.+-]*")  # a dataset, run or export name: no separators, no '..'
URL = re.compile(r"^(https?)://", re.IGNORECASE)
AISTUDIO_HOME = Path("/home/aistudio")


def disable_analytics() -> None:
    """Default GRADIO_ANALYTICS_ENABLED to False; must run before `import gradio`."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or 0.0.0.0-like wildcard: reachable from elsewhere


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """'user:pass' → (user, pass); None or '' → None. The password may contain ':'."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise UsageError("--auth must be USER:PASS with a non-empty user and password "
                         f"(also accepted from ${ENV_AUTH})")
    return user, password


def read_auth_file(path: str | os.PathLike) -> list[tuple[str, str]]:
    """The `user:password` lines of an --auth-file (blank lines and `#` comments skipped).

    The file holds passwords, so one that other users may read or write is refused (chmod 600).
    """
    p = Path(path).expanduser()
    try:
        mode = p.stat().st_mode
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"--auth-file {p}: cannot read it ({e.strerror or e})") from None
    if mode & 0o077:
        raise UsageError(f"--auth-file {p} is open to other users (mode {mode & 0o777:03o}); "
                         f"make it private with `chmod 600 {p}`")
    creds = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            creds.append(parse_auth(line))
        except UsageError:
            raise UsageError(f"--auth-file {p} line {number}: expected USER:PASSWORD with both non-empty") from None
    if not creds:
        raise UsageError(f"--auth-file {p} holds no USER:PASSWORD line")
    return creds  # type: ignore[return-value]


def resolve_auth(host: str, auth: str | None, auth_file: str | os.PathLike | None = None
                 ) -> list[tuple[str, str]] | None:
    """The credentials to launch with; refuses a host other machines can reach without them."""
    if auth and auth_file:
        raise UsageError("pass either --auth or --auth-file, not both")
    if auth_file:
        creds = read_auth_file(auth_file)
    else:
        one = parse_auth(auth or os.environ.get(ENV_AUTH))
        creds = [one] if one else None
    if creds is None and not is_loopback(host):
        raise UsageError(f"--host {host} lets other machines reach the toolbox: pass --auth-file FILE "
                         f"(USER:PASS lines, chmod 600), --auth USER:PASS or set ${ENV_AUTH}; or bind 127.0.0.1")
    return creds


def allowed_dirs(workspace: Path, data_dirs: list[str] | None = None) -> list[Path]:
    """The folders the UI may read from: the workspace, each --data-dir, /home/aistudio if present."""
    dirs = [Path(workspace).resolve()]
    given = list(data_dirs or [])
    if not given and AISTUDIO_HOME.is_dir():
        given.append(str(AISTUDIO_HOME))
    for d in given:
        p = Path(d).expanduser().resolve()
        if not p.is_dir():
            raise UsageError(f"--data-dir {d} is not a folder")
        if p not in dirs:
            dirs.append(p)
    return dirs


class PathGuard:
    """Checks user-typed paths against the allowed folders (symlinks resolved first)."""

    def __init__(self, allowed: list[Path], extra_readable: list[Path] | None = None):
        self.allowed = [Path(p).resolve() for p in allowed]
        # Gradio's own upload folder: files the user uploaded through the browser
        self.extra = [Path(p).resolve() for p in (extra_readable or [])]

    def check(self, text: str | os.PathLike) -> Path:
        """The resolved path, or UsageError saying which folders are allowed."""
        raw = str(text).strip().strip('"').strip("'")
        if not raw:
            raise UsageError("no path given: type a folder or archive path, or upload a file")
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = self.allowed[0] / path
        path = path.resolve()
        for root in self.allowed + self.extra:
            if path == root or root in path.parents:
                return path
        listed = ", ".join(str(p) for p in self.allowed)
        raise UsageError(f"{raw} is outside the folders this toolbox may read ({listed}); "
                         "start the app with --data-dir FOLDER to allow another one")

    def check_name_or_path(self, text: str | os.PathLike | None, what: str) -> str:
        """A field taking a workspace name (kept as typed) or a path (checked, returned resolved).

        Names cannot leave their workspace folder (no separators); anything else is a path and must
        lie under an allowed folder, as `check` says. Empty stays empty (the field is optional).
        """
        raw = str(text or "").strip()
        if not raw:
            return ""
        if WORKSPACE_NAME.fullmatch(raw) and raw not in (".", ".."):
            return raw
        try:
            return str(self.check(raw))
        except UsageError as e:
            raise UsageError(f"{what}: {e}") from None

    def check_file_or_url(self, text: str | os.PathLike | None, what: str,
                          keywords: tuple[str, ...] = ()) -> str:
        """A field taking a keyword (e.g. 'none'), an http(s) URL (downloaded by the job) or a path (checked)."""
        raw = str(text or "").strip()
        if not raw or raw in keywords or URL.match(raw):
            return raw
        try:
            return str(self.check(raw))
        except UsageError as e:
            raise UsageError(f"{what}: {e}") from None

    def allows(self, text: str | os.PathLike) -> bool:
        try:
            self.check(text)
            return True
        except UsageError:
            return False
