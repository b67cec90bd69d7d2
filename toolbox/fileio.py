"""Crash-safe file writes: write to a temporary sibling, then rename over the target.

A reader (the UI, a resumed job, a user) therefore sees the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `target`; on success it is renamed onto `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(target: str | os.PathLike, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(target: str | os.PathLike, data: Any, indent: int | None = 1) -> None:
    write_text(target, json.dumps(data, indent=indent, ensure_ascii=False) + "\n")


def write_yaml(target: str | os.PathLike, data: Any) -> None:
    import yaml

    write_text(target, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


@contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder next to `target`; on success it replaces `target` as a whole.

    The old folder is first renamed aside and removed only after the new one is in place, so a kill
    at any moment leaves either the old complete folder, the new complete folder, or (between the two
    renames) the old one under `<name>.old`, which `recover_dir` puts back.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        old = target.with_name(target.name + ".old")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def recover_dir(target: str | os.PathLike) -> None:
    """Undo a replacement that was interrupted between its two renames (see `atomic_dir`)."""
    target = Path(target)
    old = target.with_name(target.name + ".old")
    if old.exists():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, target)
