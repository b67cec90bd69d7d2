"""`python -m toolbox deploy` and `python -m toolbox runtimes {fetch,list}`."""
from __future__ import annotations

import argparse
import json

from .targets import TARGETS


def register(sub, common) -> None:
    p = sub.add_parser("deploy", parents=[common], help="SDK zips (demo, build files, runtime) per target",
                       description="Package an export as self-sufficient SDK zips: sdk/<export>-<target>.zip.")
    p.add_argument("--export", required=True, help="export name in the workspace, or an export folder")
    p.add_argument("--target", default="all",
                   help="all, or one or more (comma-separated) of: " + ", ".join(TARGETS))
    p.add_argument("--out", default=None, help="folder for the zips (default: workspace/sdk)")
    p.add_argument("--sample", default=None, help="picture shipped as images/sample.png")
    p.add_argument("--offline", action="store_true", help="use only runtime kits already in the cache")
    p.add_argument("--int8", action="store_true",
                   help="CPU targets carry model_int8.onnx (export --formats onnx-int8) instead of model.onnx")
    p.set_defaults(func=run_deploy)

    r = sub.add_parser("runtimes", parents=[common], help="fetch / list the ONNX Runtime kits C++ SDKs bundle",
                       description="ONNX Runtime kits (headers, libraries, licences) cached for the C++ SDKs.")
    rs = r.add_subparsers(dest="runtimes_command", metavar="ACTION")
    rs.required = True
    f = rs.add_parser("fetch", parents=[common], help="download the kit(s) a target needs into the cache")
    f.add_argument("--target", default="all", help="all, or a target name: " + ", ".join(TARGETS))
    f.set_defaults(func=run_fetch)
    lst = rs.add_parser("list", parents=[common], help="show the cache")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=run_list)


def run_deploy(args: argparse.Namespace) -> int:
    from .api import check_out_arg, deploy

    check_out_arg(args.out)
    paths = deploy(args.export, target=args.target, out=args.out, workspace=args.workspace,
                   sample=args.sample, fetch=not args.offline, int8=args.int8)
    for p in paths:
        print(p)
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    import sys

    from . import runtimes

    runtimes.fetch(args.target, progress=lambda m: print(m, file=sys.stderr))
    print(runtimes.cache_root())
    return 0


def run_list(args: argparse.Namespace) -> int:
    from . import runtimes

    rows = runtimes.list_cache()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"cache: {runtimes.cache_root()}")
    for r in rows:
        state = f"{r['mb']:.1f} MB" if r["cached"] else "not fetched"
        print(f"  {r['kit']:<14} {state:<12} for {', '.join(r['targets'])}")
    return 0
