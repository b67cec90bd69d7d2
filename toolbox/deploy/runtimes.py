"""ONNX Runtime kits for the C++ SDK targets: headers + libraries + licences, fetched once and cached.

Why this way: no registry ships ONNX Runtime's C/C++ SDK as such. The libraries are inside the
onnxruntime / onnxruntime-gpu wheels on PyPI (any platform can be downloaded with `pip download
--platform`), the headers are in the official release archive (GitHub, often unreachable) or in Debian
trixie's `libonnxruntime-dev` (headers only; its 1.21 API headers work with the newer 1.31 libraries
because ORT keeps its C ABI backwards compatible). Header-only helpers the C++ demos use (nlohmann JSON,
stb image I/O) come from Debian as well. Everything lands in a cache:

    $TOOLBOX_CACHE/runtimes   (default ~/.cache/toolbox/runtimes)
      downloads/                      wheels, .debs, release archives as fetched
      ort-headers/                    include/ + licences (shared by every kit)
      cpp-helpers/                    include/{nlohmann,stb}/ + licences
      ort-<version>-<kit>/            include/, lib/, LICENSE, ThirdPartyNotices.txt, licenses/, kit.json

A kit folder is written under a temporary name and renamed, so the cache never holds half a kit.
Offline with an empty cache, `ensure_kit` raises RuntimeFailure (exit 3) naming the command to run.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RuntimeFailure, UsageError
from ..fileio import atomic_dir, write_json
from .targets import ORT_VERSION, TARGETS, resolve_targets

RELEASE_URL = "https://github.com/microsoft/onnxruntime/releases/download/v{v}/onnxruntime-linux-x64-{v}.tgz"
DEBIAN_SUITE = "trixie"  # the first Debian release with libonnxruntime-dev
HEADER_DEBS = ("libonnxruntime-dev",)
HELPER_DEBS = ("nlohmann-json3-dev", "libstb-dev")
STB_HEADERS = ("stb_image.h", "stb_image_write.h", "stb_easy_font.h")


@dataclass(frozen=True)
class Kit:
    """Where a kit's libraries come from: a wheel (`package`, pip `platform`) and which files to keep.

    `libs` maps the file name inside the wheel's onnxruntime/capi/ to the name in the kit's lib/ (the
    Linux main library is stored under its SONAME, libonnxruntime.so.1, so no symlinks are needed).
    """

    name: str
    package: str
    platform: str
    libs: dict[str, str] = field(default_factory=dict)
    approx_mb: int = 0

    @property
    def windows(self) -> bool:
        return self.platform.startswith("win")


def _linux_libs(gpu: bool) -> dict[str, str]:
    libs = {f"libonnxruntime.so.{ORT_VERSION}": "libonnxruntime.so.1",
            "libonnxruntime_providers_shared.so": "libonnxruntime_providers_shared.so"}
    if gpu:
        libs["libonnxruntime_providers_cuda.so"] = "libonnxruntime_providers_cuda.so"
    return libs


def _windows_libs(gpu: bool) -> dict[str, str]:
    libs = {"onnxruntime.dll": "onnxruntime.dll",
            "onnxruntime_providers_shared.dll": "onnxruntime_providers_shared.dll"}
    if gpu:
        libs["onnxruntime_providers_cuda.dll"] = "onnxruntime_providers_cuda.dll"
    return libs


KITS: dict[str, Kit] = {k.name: k for k in (
    Kit("linux-x64", "onnxruntime", "manylinux_2_28_x86_64", _linux_libs(False), 17),
    Kit("linux-x64-gpu", "onnxruntime-gpu", "manylinux_2_28_x86_64", _linux_libs(True), 256),
    Kit("win-x64", "onnxruntime", "win_amd64", _windows_libs(False), 14),
    Kit("win-x64-gpu", "onnxruntime-gpu", "win_amd64", _windows_libs(True), 168),
    Kit("linux-aarch64", "onnxruntime", "manylinux_2_28_aarch64", _linux_libs(False), 16),
)}


def cache_root() -> Path:
    """$TOOLBOX_CACHE/runtimes, else ~/.cache/toolbox/runtimes."""
    base = os.environ.get("TOOLBOX_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "toolbox"
    return root / "runtimes"


def kit_dir(name: str) -> Path:
    return cache_root() / f"ort-{ORT_VERSION}-{name}"


def fetch_hint(target_or_kit: str) -> str:
    return f"python -m toolbox runtimes fetch --target {target_or_kit}"


# ----------------------------------------------------------------------------------------- public
def ensure_kit(name: str, *, fetch: bool = True, target: str | None = None) -> Path:
    """Path of the complete cached kit `name`, fetching it first when allowed and missing."""
    if name not in KITS:
        raise UsageError(f"unknown runtime kit '{name}' (known: {', '.join(KITS)})")
    d = kit_dir(name)
    if (d / "kit.json").is_file():
        return d
    what = target or name
    if not fetch:
        raise RuntimeFailure(f"the ONNX Runtime kit '{name}' for {what} is not in the cache {cache_root()}; "
                             f"run `{fetch_hint(what)}` on a machine that reaches PyPI and Debian")
    try:
        return _build_kit(KITS[name])
    except RuntimeFailure as e:
        raise RuntimeFailure(f"{e}; the kit '{name}' for {what} is not cached in {cache_root()}: run "
                             f"`{fetch_hint(what)}` where PyPI and Debian are reachable") from e


def ensure_helpers(*, fetch: bool = True) -> Path:
    """The header-only C++ helpers (nlohmann JSON, stb image I/O) every C++ demo bundles."""
    d = cache_root() / "cpp-helpers"
    if (d / "helpers.json").is_file():
        return d
    if not fetch:
        raise RuntimeFailure(f"the C++ helper headers are not in the cache {cache_root()}; "
                             f"run `{fetch_hint('all')}`")
    debs = _apt_download(HELPER_DEBS)
    with atomic_dir(d) as tmp:
        inc = tmp / "include"
        lic = tmp / "licenses"
        lic.mkdir(parents=True)
        versions = {}
        for pkg, deb in debs.items():
            root = _extract_deb(deb, tmp / "_x" / pkg)
            versions[pkg] = deb.name
            shutil.copy(root / f"usr/share/doc/{pkg}/copyright", lic / f"{pkg}.copyright")
            if pkg == "nlohmann-json3-dev":
                shutil.copytree(root / "usr/include/nlohmann", inc / "nlohmann")
            else:
                (inc / "stb").mkdir(parents=True)
                for h in STB_HEADERS:
                    shutil.copy(root / "usr/include/stb" / h, inc / "stb" / h)
        shutil.rmtree(tmp / "_x")
        write_json(tmp / "helpers.json", {"schema_version": 1, "debian": versions,
                                          "source": f"Debian {DEBIAN_SUITE}"})
    return d


def fetch(target: str = "all", *, progress=print) -> list[Path]:
    """Fetch every runtime kit the target(s) need (C++ targets; Python targets need none)."""
    done: list[Path] = []
    kits = [t.kit for t in resolve_targets(target) if t.kit]
    if not kits:
        progress(f"{target}: nothing to fetch (Python targets install onnxruntime with pip on the user's machine)")
        return done
    progress(f"helpers: {ensure_helpers()}")
    for name in dict.fromkeys(kits):
        kit = KITS[name]
        cached = (kit_dir(name) / "kit.json").is_file()
        if not cached:
            progress(f"{name}: fetching {kit.package} {ORT_VERSION} for {kit.platform} (~{kit.approx_mb} MB) ...")
        d = ensure_kit(name, target=target)
        progress(f"{name}: {'cached' if cached else 'ready'} at {d}")
        done.append(d)
    return done


def kit_info(d: Path) -> dict:
    return json.loads((d / "kit.json").read_text(encoding="utf-8"))


def list_cache() -> list[dict]:
    """One row per kit: name, cached?, path, size in MB."""
    rows = []
    for name in KITS:
        d = kit_dir(name)
        ok = (d / "kit.json").is_file()
        size = sum(p.stat().st_size for p in d.rglob("*") if p.is_file()) if ok else 0
        rows.append({"kit": name, "cached": ok, "path": str(d), "mb": round(size / 2**20, 1),
                     "targets": [t.name for t in TARGETS.values() if t.kit == name]})
    return rows


# ---------------------------------------------------------------------------------------- kit build
def _build_kit(kit: Kit) -> Path:
    wheel = _download_wheel(kit)
    headers = _ensure_headers()
    d = kit_dir(kit.name)
    with atomic_dir(d) as tmp:
        shutil.copytree(headers / "include", tmp / "include")
        shutil.copytree(headers / "licenses", tmp / "licenses")
        (tmp / "lib").mkdir()
        with zipfile.ZipFile(wheel) as z:
            names = set(z.namelist())
            for src, dst in kit.libs.items():
                member = f"onnxruntime/capi/{src}"
                if member not in names:
                    raise RuntimeFailure(f"{wheel.name} has no {member}: the wheel layout changed; "
                                         f"update toolbox/deploy/runtimes.py KITS")
                _extract_member(z, member, tmp / "lib" / dst)
            for member, dst in (("onnxruntime/LICENSE", "LICENSE"),
                                ("onnxruntime/ThirdPartyNotices.txt", "ThirdPartyNotices.txt")):
                if member in names:
                    _extract_member(z, member, tmp / dst)
        if not (tmp / "LICENSE").is_file():
            raise RuntimeFailure(f"{wheel.name} carries no onnxruntime/LICENSE; refusing to bundle it unlicensed")
        if kit.windows:
            exports = pe_exports(tmp / "lib" / "onnxruntime.dll")
            (tmp / "lib" / "onnxruntime.def").write_text(
                "LIBRARY onnxruntime.dll\nEXPORTS\n" + "".join(f"    {n}\n" for n in exports), encoding="ascii")
        header_info = json.loads((headers / "headers.json").read_text(encoding="utf-8"))
        write_json(tmp / "kit.json", {
            "schema_version": 1, "kit": kit.name, "onnxruntime": ORT_VERSION, "package": kit.package,
            "platform": kit.platform, "wheel": wheel.name, "headers": header_info,
            "libs": sorted(kit.libs.values()) + (["onnxruntime.def"] if kit.windows else [])})
    return d


def _extract_member(z: zipfile.ZipFile, member: str, dst: Path) -> None:
    with z.open(member) as src, open(dst, "wb") as out:
        shutil.copyfileobj(src, out, 1 << 20)
    os.chmod(dst, 0o755 if dst.suffix in (".so", ".dll", ".1") or ".so" in dst.name else 0o644)


def _download_wheel(kit: Kit) -> Path:
    """`pip download` the kit's wheel into downloads/ (reused when present)."""
    dl = cache_root() / "downloads"
    stem = f"{kit.package.replace('-', '_')}-{ORT_VERSION}-"
    plat = kit.platform.split("_", 1)[-1] if kit.platform.startswith("manylinux") else kit.platform
    for w in sorted(dl.glob(f"{stem}*.whl")) if dl.is_dir() else []:
        if plat in w.name:
            return w
    dl.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dl, prefix=".pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--platform", kit.platform, "--python-version", "3.11", "--implementation", "cp",
               "--retries", "1", "--timeout", "20", "--progress-bar", "off", "-q",
               "-d", tmp, f"{kit.package}=={ORT_VERSION}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        got = list(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not got:
            last = (r.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise RuntimeFailure(f"could not download {kit.package}=={ORT_VERSION} for {kit.platform} "
                                 f"from PyPI ({last})")
        final = dl / got[0].name
        os.replace(got[0], final)
    return final


def _ensure_headers() -> Path:
    """ORT C/C++ headers: the official release archive when reachable, else Debian's libonnxruntime-dev."""
    d = cache_root() / "ort-headers"
    if (d / "headers.json").is_file():
        return d
    archive = _try_release_archive()
    with atomic_dir(d) as tmp:
        (tmp / "licenses").mkdir()
        if archive is not None:
            with tarfile.open(archive) as tf:
                for m in tf.getmembers():
                    parts = Path(m.name).parts
                    if len(parts) > 2 and parts[1] == "include" and m.isfile():
                        dst = tmp / "include" / Path(*parts[2:])
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        dst.write_bytes(tf.extractfile(m).read())
                    elif len(parts) == 2 and parts[1] in ("LICENSE", "ThirdPartyNotices.txt") and m.isfile():
                        (tmp / "licenses" / f"onnxruntime-headers-{parts[1]}").write_bytes(tf.extractfile(m).read())
            info = {"source": "official ONNX Runtime release archive", "version": ORT_VERSION,
                    "file": archive.name}
        else:
            deb = _apt_download(HEADER_DEBS)["libonnxruntime-dev"]
            root = _extract_deb(deb, tmp / "_x")
            shutil.copytree(root / "usr/include/onnxruntime", tmp / "include")
            shutil.copy(root / "usr/share/doc/libonnxruntime-dev/copyright",
                        tmp / "licenses" / "onnxruntime-headers.copyright")
            shutil.rmtree(tmp / "_x")
            version = deb.name.split("_")[1]
            info = {"source": f"Debian {DEBIAN_SUITE} libonnxruntime-dev", "version": version, "file": deb.name}
        write_json(tmp / "headers.json", info)
    return d


def _try_release_archive() -> Path | None:
    dl = cache_root() / "downloads"
    url = RELEASE_URL.format(v=ORT_VERSION)
    dst = dl / url.rsplit("/", 1)[-1]
    if dst.is_file():
        return dst
    if os.environ.get("TOOLBOX_NO_GITHUB"):
        return None
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            data = r.read()
    except Exception:  # noqa: BLE001 - unreachable GitHub is the normal case here; Debian is the fallback
        return None
    dl.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".part")
    tmp.write_bytes(data)
    os.replace(tmp, dst)
    return dst


# ------------------------------------------------------------------------------------------- Debian
def _debian_mirror() -> str:
    src = Path("/etc/apt/sources.list.d/debian.sources")
    if src.is_file():
        for line in src.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    lst = Path("/etc/apt/sources.list")
    if lst.is_file():
        for line in lst.read_text().splitlines():
            parts = line.split()
            if parts and parts[0] == "deb":
                return next(p for p in parts[1:] if "://" in p)
    return "http://deb.debian.org/debian"


def _apt_download(packages: tuple[str, ...]) -> dict[str, Path]:
    """`apt-get download` packages from Debian trixie with a private apt config (the system's is untouched)."""
    dl = cache_root() / "downloads"
    have = {p: sorted(dl.glob(f"{p}_*.deb")) for p in packages} if dl.is_dir() else {}
    if have and all(have.get(p) for p in packages):
        return {p: have[p][-1] for p in packages}
    keyring = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
    if not shutil.which("apt-get") or not keyring.is_file():
        raise RuntimeFailure(f"the ONNX Runtime headers and C++ helpers come from Debian ({', '.join(packages)}) "
                             "but apt-get or the Debian archive keyring is missing and the official ONNX Runtime "
                             "release archive is unreachable")
    apt = cache_root() / "apt"
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(f"deb [signed-by={keyring}] {_debian_mirror()} {DEBIAN_SUITE} main\n")
    opts = ["-o", f"Dir::Etc::SourceList={apt / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::Cache={apt / 'cache'}",
            "-o", "APT::Sandbox::User=root", "-o", "Acquire::Retries=1", "-o", "Acquire::http::Timeout=20"]
    if os.geteuid() != 0:
        opts += ["-o", "Debug::NoLocking=1"]
    with tempfile.TemporaryDirectory(dir=apt, prefix=".dl-") as tmp:
        for cmd in (["apt-get", *opts, "update", "-qq"], ["apt-get", *opts, "download", "-qq", *packages]):
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
            if r.returncode != 0 or "Err:" in r.stdout or "W: Failed" in r.stderr:
                last = (r.stderr.strip().splitlines() or r.stdout.strip().splitlines() or ["?"])[-1]
                raise RuntimeFailure(f"could not download {', '.join(packages)} from Debian {DEBIAN_SUITE} ({last})")
        dl.mkdir(parents=True, exist_ok=True)
        out = {}
        for p in packages:
            debs = sorted(Path(tmp).glob(f"{p}_*.deb"))
            if not debs:
                raise RuntimeFailure(f"apt-get download gave no {p} .deb from Debian {DEBIAN_SUITE}")
            os.replace(debs[-1], dl / debs[-1].name)
            out[p] = dl / debs[-1].name
    return out


def _extract_deb(deb: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["dpkg-deb", "-x", str(deb), str(dst)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeFailure(f"dpkg-deb could not unpack {deb}: {r.stderr.strip()}")
    return dst


# ---------------------------------------------------------------------------------------------- PE
def pe_exports(dll: Path) -> list[str]:
    """Names exported by a PE32+ DLL (for the .def file MSVC's `lib /def:` turns into an import library)."""
    data = dll.read_bytes()
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    if data[pe:pe + 4] != b"PE\0\0":
        raise RuntimeFailure(f"{dll} is not a PE file")
    nsec, opt_size = struct.unpack_from("<H", data, pe + 6)[0], struct.unpack_from("<H", data, pe + 20)[0]
    opt = pe + 24
    magic = struct.unpack_from("<H", data, opt)[0]
    dd = opt + (112 if magic == 0x20B else 96)
    exp_rva = struct.unpack_from("<I", data, dd)[0]
    sections = []
    for i in range(nsec):
        s = opt + opt_size + 40 * i
        vsize, va, rawsize, rawptr = struct.unpack_from("<IIII", data, s + 8)
        sections.append((va, max(vsize, rawsize), rawptr))

    def off(rva: int) -> int:
        for va, size, raw in sections:
            if va <= rva < va + size:
                return rva - va + raw
        raise RuntimeFailure(f"{dll}: RVA {rva:#x} outside every section")

    if not exp_rva:
        return []
    e = off(exp_rva)
    n_names, names_rva = struct.unpack_from("<I", data, e + 24)[0], struct.unpack_from("<I", data, e + 32)[0]
    out = []
    for i in range(n_names):
        p = off(struct.unpack_from("<I", data, off(names_rva) + 4 * i)[0])
        out.append(data[p:data.index(b"\0", p)].decode("ascii"))
    return out
