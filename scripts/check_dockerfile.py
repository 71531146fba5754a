#!/usr/bin/env python3
"""Checks that the Dockerfile's build stage can resolve the crate, without a Docker engine.

It replays the build stage as Docker would see it: an empty directory receives exactly what
the stage's `COPY` lines copy (from the build context, the repository root), and at every
`RUN` that calls cargo the `RUN`'s commands run there, with `cargo build ...` replaced by
`cargo fetch --locked` for the host (the manifest, its targets and the lock file must
resolve: a `[[bench]]` or `[[test]]` whose source the stage never copied fails here as it
would fail `docker build`; nothing is compiled), and `strip` skipped (no binary is built). Exit 0 when every such
step succeeds; 1 naming the step otherwise.

    scripts/check_dockerfile.py [--dockerfile PATH]
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def build_stage(steps: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The steps of the first stage (the one that runs cargo)."""
    stage: list[tuple[str, str]] = []
    for word, rest in steps:
        if word == "FROM" and stage:
            break
        stage.append((word, rest))
    return stage


def copy_into(context: Path, workdir: Path, args: str) -> None:
    parts = [p for p in shlex.split(args) if not p.startswith("--")]
    *sources, dest = parts
    target = workdir / dest
    for source in sources:
        src = context / source
        if not src.exists():
            raise SystemExit(f"COPY {args}: {source} is not in the build context")
        if src.is_dir():
            into = target if len(sources) == 1 and not dest.endswith("/") else target / src.name
            shutil.copytree(src, into, dirs_exist_ok=True)
        else:
            into = target / src.name if dest.endswith("/") or target.is_dir() else target
            into.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, into)


def replay_run(workdir: Path, args: str) -> None:
    commands = []
    for command in args.split("&&"):
        command = command.strip()
        if command.startswith("cargo build"):
            # Parses the manifest with its targets and checks the lock file, building nothing.
            command = 'cargo fetch --locked --target "$(rustc -vV | sed -n "s/^host: //p")"'
        elif command.startswith("strip "):
            continue
        commands.append(command)
    script = " && ".join(commands)
    result = subprocess.run(
        ["bash", "-c", script], cwd=workdir, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        print(f"FAILED: RUN {args}\n  as: {script}\n{result.stderr.strip()}", file=sys.stderr)
        raise SystemExit(1)
    print(f"  ok   RUN {args[:90]}{'...' if len(args) > 90 else ''}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dockerfile", type=Path, default=ROOT / "Dockerfile")
    args = parser.parse_args()
    stage = build_stage(instructions(args.dockerfile.read_text()))
    cargo_runs = 0
    with tempfile.TemporaryDirectory(prefix="dockerfile-check-") as tmp:
        workdir = Path(tmp)
        for word, rest in stage:
            if word == "WORKDIR":
                continue  # the empty directory stands for it
            if word == "COPY":
                copy_into(ROOT, workdir, rest)
                print(f"  ok   COPY {rest}")
            elif word == "RUN" and "cargo" in rest:
                replay_run(workdir, rest)
                cargo_runs += 1
    if cargo_runs == 0:
        print("FAILED: the build stage runs no cargo command", file=sys.stderr)
        return 1
    print(f"Dockerfile build stage resolves ({cargo_runs} cargo steps replayed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
