"""Compare an environment with the locks that made it (scripts/setup.sh runs this).

    python scripts/check_env.py LOCK [LOCK ...]   this interpreter's distributions against the
                                                  locks: exit 1 listing every difference
    python scripts/check_env.py --diff OLD NEW    what moved from one lock to another

Only the standard library: it runs in any venv, before or after an install.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
# The project itself is installed from the checkout (editable), not from a lock.
OWN = "prefgen"


def normalize(name: str) -> str:
    """A distribution's name as indexes compare them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """Name -> version of each `name==version` line (hash and comment lines skipped)."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[normalize(match[1])] = match[2]
    return pins


def installed() -> dict[str, str]:
    found = {normalize(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    found.pop(OWN, None)
    return found


def differences(want: dict[str, str], have: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(want.keys() | have.keys()):
        wanted, got = want.get(name), have.get(name)
        if got is None:
            lines.append(f"{name}: locked {wanted}, not installed")
        elif wanted is None:
            lines.append(f"{name}: {got} installed, not in the lock")
        elif got != wanted:
            lines.append(f"{name}: locked {wanted}, installed {got}")
    return lines


def moved(old: dict[str, str], new: dict[str, str]) -> list[str]:
    return [
        f"{name}: {old.get(name, '(new)')} -> {new.get(name, '(gone)')}"
        for name in sorted(old.keys() | new.keys())
        if old.get(name) != new.get(name)
    ]


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "--diff":
        lines = moved(read_lock(Path(argv[1])), read_lock(Path(argv[2])))
        print("\n".join(lines) if lines else "nothing moved")
        return 0
    if not argv or argv[0].startswith("-"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    want: dict[str, str] = {}
    for lock in argv:
        want.update(read_lock(Path(lock)))
    lines = differences(want, installed())
    for line in lines:
        print(f"check_env: {line}", file=sys.stderr)
    if lines:
        print(f"check_env: {sys.prefix} differs from {' '.join(argv)}", file=sys.stderr)
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
