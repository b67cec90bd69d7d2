"""Assemble one SDK zip: render the target's templates, add model files, runtime kit and licences.

Files under templates/ ending in `.j2` are Jinja2 templates (rendered with the target's context, suffix
dropped); other files are copied as they are. Windows batch files get CRLF line endings. The zip is
written to a temporary file and renamed, so a crash never leaves half a zip under the final name.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..fileio import atomic_path
from .targets import Target

TEMPLATES = Path(__file__).resolve().parent / "templates"
EXEC_SUFFIXES = (".sh",)
CRLF_SUFFIXES = (".bat", ".cmd", ".ps1")
ZIP_TIME = (2026, 1, 1, 0, 0, 0)
BIG_FILE = 32 << 20  # fixed entry times: the same inputs give the same zip bytes


def jinja_env():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=False, lstrip_blocks=False)


@dataclass
class Bundle:
    """The files of one zip: arcname (relative, '/'-separated) → a source file or bytes, plus a mode."""

    root: str
    files: dict[str, tuple[Path | bytes, int]] = field(default_factory=dict)

    def add_bytes(self, arc: str, data: bytes | str, mode: int | None = None) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        if arc.endswith(CRLF_SUFFIXES):
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        self.files[arc] = (data, mode if mode is not None else (0o755 if arc.endswith(EXEC_SUFFIXES) else 0o644))

    def add_file(self, arc: str, src: Path, mode: int | None = None) -> None:
        if arc.endswith(CRLF_SUFFIXES):
            self.add_bytes(arc, src.read_bytes(), mode)
            return
        if mode is None:
            mode = 0o755 if (src.stat().st_mode & stat.S_IXUSR) or arc.endswith(EXEC_SUFFIXES) else 0o644
        self.files[arc] = (src, mode)

    def add_tree(self, arc_dir: str, src_dir: Path) -> None:
        for p in sorted(src_dir.rglob("*")):
            if p.is_file():
                self.add_file(f"{arc_dir}/{p.relative_to(src_dir).as_posix()}", p)

    def add_templates(self, template_dir: str, ctx: dict, arc_dir: str = "",
                      skip: Callable[[str], bool] | None = None) -> None:
        """Every file of templates/<template_dir>, rendered when it ends in .j2."""
        env = jinja_env()
        base = TEMPLATES / template_dir
        for p in sorted(base.rglob("*")):
            if not p.is_file() or "__pycache__" in p.parts:
                continue
            rel = p.relative_to(base).as_posix()
            if skip and skip(rel):
                continue
            arc = f"{arc_dir}/{rel}" if arc_dir else rel
            if rel.endswith(".j2"):
                self.add_bytes(arc[:-3], env.get_template(f"{template_dir}/{rel}").render(**ctx))
            else:
                self.add_file(arc, p)

    def render(self, arc: str, template: str, ctx: dict) -> None:
        self.add_bytes(arc, jinja_env().get_template(template).render(**ctx))

    def write(self, target: Path, compresslevel: int = 6) -> Path:
        """Write the zip atomically; every entry lies under `<root>/`."""
        with atomic_path(target) as tmp:
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as z:
                for arc in sorted(self.files):
                    src, mode = self.files[arc]
                    info = zipfile.ZipInfo(f"{self.root}/{arc}", date_time=ZIP_TIME)
                    info.external_attr = (stat.S_IFREG | mode) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    big = not isinstance(src, bytes) and src.stat().st_size > BIG_FILE
                    info._compresslevel = 1 if big else compresslevel  # GPU libraries: level 1 is 4x faster, ~same size
                    info.create_system = 3  # unix: keeps the mode bits for `unzip`
                    if isinstance(src, bytes):
                        z.writestr(info, src)
                    else:
                        with open(src, "rb") as f, z.open(info, "w", force_zip64=True) as out:
                            shutil.copyfileobj(f, out, 1 << 20)
            os.chmod(tmp, 0o644)  # mkstemp made it private; a zip is for sharing
        return target


def version_text(ctx: dict) -> str:
    return jinja_env().get_template("common/VERSION.j2").render(**ctx)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def dump_json(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1) + "\n"


def target_context(target: Target, **extra) -> dict:
    """Jinja context shared by every template of a target."""
    return {"target": target.name, "os": target.os, "device": target.device, "lang": target.lang,
            "gpu": target.gpu, "windows": target.windows, "rk3588": target.rk3588, **extra}
