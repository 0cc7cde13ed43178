"""Seeded random draws every simulated customer makes.

Each customer and each side stream (arrivals, a price-rise reaction, a
purchase cap) has its own generator, seeded from ``(seed, key)``: a customer's
life then does not change when the population around it grows or shrinks.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Sequence, TypeVar

T = TypeVar("T")


def derive_seed(seed: int, key: object) -> int:
    """Stable 64-bit seed for a sub-stream: blake2b, not hash(), so it does not
    move with PYTHONHASHSEED.

    >>> derive_seed(42, 7) == derive_seed(42, 7) != derive_seed(42, 8)
    True
    """
    h = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8)
    return int.from_bytes(h.digest(), "big")


def poisson(rnd: random.Random, lam: float) -> int:
    """Poisson draw: Knuth's product of uniforms for small means (exact, and a
    day's sessions are a handful), a rounded normal above 30 where Knuth's loop
    would be long."""
    if lam <= 0.0:
        return 0
    if lam > 30.0:
        return max(0, int(rnd.gauss(lam, math.sqrt(lam)) + 0.5))
    limit = math.exp(-lam)
    k = 0
    p = rnd.random()
    while p > limit:
        k += 1
        p *= rnd.random()
    return k


def pick(rnd: random.Random, items: Sequence[T], weights: Sequence[float]) -> T:
    """One item by weight, from one uniform and this exact subtraction: a
    customer's life is one sequence of draws on its generator, so any other way
    of picking would change every seeded population."""
    u = rnd.random() * sum(weights)
    for it, w in zip(items, weights):
        u -= w
        if u < 0:
            return it
    return items[-1]
