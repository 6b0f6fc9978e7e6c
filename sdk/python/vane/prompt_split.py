"""Traffic-split labels: which version of a label's allocation serves a fetch.

The registry and the SDK draw with this same function, so that a sticky key (a user or session
id) gets the same version whichever of them resolves the label.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

_RANDOM = random.Random()


def choose(weights: Sequence[tuple[int, int]], sticky_key: str | None, salt: str = "") -> int:
    """Pick a version from (version, weight) pairs: by weight at random, or, with a sticky key,
    the same version for that key every time the allocation is unchanged."""
    if len(weights) == 1:
        return weights[0][0]
    ordered = sorted(weights)
    total = sum(w for _, w in ordered)
    if total <= 0:
        raise ValueError("a split needs a positive total weight")
    if sticky_key:
        digest = hashlib.blake2b(f"{salt}\x00{sticky_key}".encode(), digest_size=8).digest()
        point = int.from_bytes(digest, "big") % total
    else:
        point = _RANDOM.randrange(total)
    for version, weight in ordered:
        if point < weight:
            return version
        point -= weight
    return ordered[-1][0]
