#!/usr/bin/env python3
"""Find a Pocket Studio model bundle, check it against its manifest and stage it.

    stage-bundle.py SEARCH_ROOT OUT_DIR [--kind text-to-image]

The bundle is SEARCH_ROOT itself or the single folder below it that holds a
pocket-studio.toml (an archive usually unpacks to one top-level folder). Every
file the manifest's [sha256] table lists must exist and match; those files and
the manifest are copied to OUT_DIR, nothing else. The service checks the same
hashes when it loads the bundle, so a bad bundle fails the build here instead
of coming up as ModelUnavailable on the device.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tomllib
from pathlib import Path, PurePosixPath

MANIFEST = "pocket-studio.toml"


def find_bundle(root: Path) -> Path:
    if (root / MANIFEST).is_file():
        return root
    found = sorted({p.parent for p in root.rglob(MANIFEST)})
    if len(found) != 1:
        where = ", ".join(str(p) for p in found) or "none"
        sys.exit(f"stage-bundle: expected exactly one {MANIFEST} under {root}, found: {where}")
    return found[0]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--kind", default="text-to-image")
    args = parser.parse_args()

    bundle = find_bundle(args.root)
    manifest = tomllib.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("kind") != args.kind:
        sys.exit(f"stage-bundle: {bundle / MANIFEST}: kind is {manifest.get('kind')!r}, expected {args.kind!r}")
    table = manifest.get("sha256") or {}
    if not table:
        sys.exit(f"stage-bundle: {bundle / MANIFEST} has no [sha256] table")
    errors = []
    for rel, expected in sorted(table.items()):
        parts = PurePosixPath(rel).parts
        if PurePosixPath(rel).is_absolute() or ".." in parts:
            errors.append(f"{rel}: not a path inside the bundle")
            continue
        path = bundle.joinpath(*parts)
        if not path.is_file():
            errors.append(f"{rel}: missing")
        elif sha256(path) != expected.lower():
            errors.append(f"{rel}: sha256 differs from the manifest")
    if errors:
        sys.exit(f"stage-bundle: {bundle} does not match its manifest:\n  " + "\n  ".join(errors))

    if args.out.exists():
        shutil.rmtree(args.out)
    for rel in [MANIFEST, *sorted(table)]:
        dest = args.out.joinpath(*PurePosixPath(rel).parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle.joinpath(*PurePosixPath(rel).parts), dest)
    print(f"stage-bundle: {manifest.get('name', bundle.name)} ({len(table)} files) from {bundle}")


if __name__ == "__main__":
    main()
