"""Benchmark: cost of drawing simulated IP addresses (the simulator draws ~10^5 per run)."""

from __future__ import annotations

import random
import timeit

from brokerguard.sim.networks import BLOCKS, random_ip, random_ip_of

rng = random.Random(6)
n = 200_000
per_ip = timeit.timeit(lambda: random_ip(BLOCKS[0], rng), number=n) / n
per_kind = timeit.timeit(lambda: random_ip_of("jp_mobile", rng), number=n) / n
print(f"random_ip        {per_ip * 1e6:.2f} µs per call")
print(f"random_ip_of     {per_kind * 1e6:.2f} µs per call")
