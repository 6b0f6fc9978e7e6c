"""What a distribution brings into an environment: its installed dependency closure and its size on disk."""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# Distributions a server install must never hold: PyTorch, its compiler and the CUDA libraries it pulls,
# and the model frameworks that depend on it.
HEAVY = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*|sentence-transformers|transformers)$")


def closure(root: str) -> dict[str, metadata.Distribution]:
    """The installed distributions `root` needs (its requirements without extras, recursively), by name."""
    installed = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}
    found: dict[str, metadata.Distribution] = {}
    pending = [canonicalize_name(root)]
    while pending:
        name = pending.pop()
        if name in found:
            continue
        if name not in installed:
            raise LookupError(f"{name} is required but not installed")
        found[name] = installed[name]
        for line in installed[name].requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(canonicalize_name(requirement.name))
    return found


def heavy(names: Iterable[str]) -> list[str]:
    return sorted(name for name in names if HEAVY.match(name))


def installed_bytes(distribution: metadata.Distribution) -> int:
    """Bytes on disk of the files the distribution's RECORD lists (an editable install: its metadata only)."""
    total = 0
    for file in distribution.files or []:
        path = Path(str(distribution.locate_file(file)))
        if path.is_file():
            total += path.stat().st_size
    return total


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())
