"""Scores the systemd units' sandboxing: `systemd-analyze security --offline=true` for each unit.

Usage: python benchmarks/unit_security.py [UNIT_FILE ...] [--top N] [--max SCORE]
Without files it scores every systemd/*.service. For each unit it prints the overall exposure
(0 = fully sandboxed, 10 = none; the project's target is at most 2.0) and the N largest exposure
items that remain, each with systemd's explanation. Exits 1 if a unit scores above --max.
The scores come from this machine's systemd version; quote them with it (printed first).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {"SYSTEMD_LOG_LEVEL": "info", "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "cat", "PATH": "/usr/bin:/bin"}


def analyze(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=120, env=ENV)


def score(unit: Path) -> tuple[str, float, list[dict]]:
    """The unit's name as systemd loads it, its overall exposure and its items that still add exposure."""
    text = analyze("security", "--offline=true", "--no-pager", str(unit))
    found = re.search(r"Overall exposure level for (\S+): (\d+(?:\.\d+)?)", text.stdout)
    if not found:
        raise SystemExit(f"{unit}: no overall exposure in the output:\n{text.stdout}{text.stderr}")
    table = analyze("security", "--offline=true", "--no-pager", "--json=short", str(unit))
    items = [item for item in json.loads(table.stdout) if item.get("exposure") not in (None, "0.0")]
    items.sort(key=lambda item: -float(item["exposure"]))
    return found.group(1), float(found.group(2)), items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("units", nargs="*", type=Path, help="unit files (default: systemd/*.service)")
    parser.add_argument("--top", type=int, default=5, help="remaining exposure items to show per unit")
    parser.add_argument("--max", type=float, default=2.0, help="highest acceptable overall exposure")
    args = parser.parse_args()
    if shutil.which("systemd-analyze") is None:
        print("systemd-analyze is not installed (Debian: apt-get install systemd)", file=sys.stderr)
        return 2
    print(analyze("--version").stdout.splitlines()[0])
    units = args.units or sorted((REPO / "systemd").glob("*.service"))
    worst = 0.0
    for unit in units:
        name, exposure, items = score(unit)
        worst = max(worst, exposure)
        print(f"\n{unit.name} (scored as {name}): exposure {exposure:.1f}")
        for item in items[: args.top]:
            print(f"  {float(item['exposure']):.1f}  {item['name']:<42} {item['description']}")
    print(f"\nworst: {worst:.1f} (target <= {args.max:.1f})")
    return 1 if worst > args.max else 0


if __name__ == "__main__":
    sys.exit(main())
