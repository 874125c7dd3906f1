"""``m1-ascend verify-weights DIR [--write [--force]]``: record or check the SHA-256 manifest of a weight directory.

Exit status: 0 intact (or manifest written), 1 files differ (each one is named), 2 no manifest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify-weights", help="record or check the SHA-256 manifest (SHA256SUMS) of a weight directory",
        description="Check DIR against DIR/SHA256SUMS (exit 0 intact, 1 altered/missing/extra files, 2 no manifest), "
                    "or record it with --write. The manifest is in `sha256sum -c` format.")
    parser.add_argument("directory", type=Path, metavar="DIR", help="weight directory")
    parser.add_argument("--write", action="store_true", help="record the manifest of the files now in DIR")
    parser.add_argument("--force", action="store_true", help="with --write: replace an existing manifest")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..weights import MANIFEST, verify_weights, write_manifest

    progress = not args.no_progress
    if args.write:
        manifest = write_manifest(args.directory, force=args.force, progress=progress)
        count = sum(1 for line in manifest.read_text(encoding="utf-8").splitlines() if line)
        print(f"wrote {manifest} ({count} files); check it with: cd {args.directory} && sha256sum -c {MANIFEST}")
        return 0
    if args.force:
        raise ValueError("--force only applies with --write")
    result = verify_weights(args.directory, progress=progress)
    if not result.manifest_found:
        print(f"m1-ascend verify-weights: error: {result.describe()}; record one with --write", file=sys.stderr)
        return 2
    for problem in result.problems():
        print(problem)
    print(result.describe() if result.intact else
          f"FAILED: {len(result.problems())} file(s) differ from {args.directory / MANIFEST}")
    return 0 if result.intact else 1
