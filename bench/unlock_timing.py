"""Benchmark: does ``/unlock/options`` or ``/unlock/verify`` take longer for some IDs?

    python bench/unlock_timing.py [--requests 200] [--seed 1]

The unlock page answers the same for every ID typed (tests/test_frontdoor_unlock.py), but a
criminal holding a list of IDs could still time the answers to learn which accounts exist or
are locked (the ones worth a call posing as the support desk). This drives the demo site
in-process (Starlette's TestClient, no lifespan, no guard: nothing on these two paths asks it)
with ``--requests`` requests per kind of ID and endpoint, the kinds interleaved in a shuffled
order so that drift and warm-up fall on all alike:

- ``missing``: an ID that does not exist;
- ``existing``: a customer whose account is not locked;
- ``locked``: a customer whose account is locked (its open unlock request is reused).

For ``/unlock/verify`` two answers are timed: a bogus one (no ceremony behind it), and a real
assertion of the asker's own passkey (a criminal's own account at the broker) answering the
ceremony that ``/unlock/options`` began for the ID — the strongest probe anyone can make. The
rate limits' clock is moved on an hour before every request, so no ask is refused (every kind
is counted alike either way). Prints the median and the interquartile range of each, in
microseconds, and each kind's median minus the missing ID's; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from brokerguard.auth.testing import SoftAuthenticator
from brokerguard.frontdoor.app import create_site
from brokerguard.frontdoor.guardclient import GuardClient
from brokerguard.frontdoor.site import SiteConfig

ORIGIN = "http://localhost"
KINDS = {"missing": "N404", "existing": "E1", "locked": "L1"}


def build(folder: Path) -> tuple[Any, SoftAuthenticator]:
    config = SiteConfig(origin=ORIGIN, rp_id="localhost", store_path=folder / "site.db")
    app = create_site(config, GuardClient("http://127.0.0.1:9", "bgk_bench"))
    site = app.state.site
    for account in ("E1", "L1", "A1"):
        site.add_customer(account, "correct-horse-battery", name=account, email=f"{account}@x.jp")
    site.lockout.lock("L1", reason="customer", by="customer")  # the site's lock only
    own = SoftAuthenticator()  # the asker's own passkey, on an account of his own
    options = site.passkeys.registration_options("A1", "A1")
    site.passkeys.register("A1", own.create(options, ORIGIN), "mine")
    clock = [datetime.now(UTC)]

    def moving() -> datetime:  # an hour on at every request: no window ever fills
        clock[0] += timedelta(hours=1, seconds=1)
        return clock[0]

    site.limiter.clock = moving
    return app, own


def measure(requests: int, seed: int) -> dict[tuple[str, str], list[float]]:
    with tempfile.TemporaryDirectory() as tmp:
        app, own = build(Path(tmp))
        client = TestClient(app, base_url=ORIGIN, client=("203.0.113.9", 40000))
        bogus = {"id": "eA", "rawId": "eA", "type": "public-key", "response": {}}
        plan = [
            (endpoint, kind)
            for endpoint in ("options", "verify-bogus", "verify-own")
            for kind in KINDS
            for _ in range(requests + 20)  # the first 20 of each are warm-up
        ]
        random.Random(seed).shuffle(plan)
        seen: dict[tuple[str, str], list[float]] = {}
        for endpoint, kind in plan:
            account = KINDS[kind]
            if endpoint == "options":
                body: dict[str, Any] = {"account": account}
                path = "/unlock/options"
            else:
                path = "/unlock/verify"
                if endpoint == "verify-own":
                    begun = client.post("/unlock/options", json={"account": account}).json()
                    answer = own.get(begun["options"], ORIGIN)
                else:
                    answer = bogus
                body = {"account": account, "response": answer}
            t0 = time.perf_counter_ns()
            answered = client.post(path, json=body)
            elapsed = (time.perf_counter_ns() - t0) / 1000
            expected = 200 if endpoint == "options" else 403
            if answered.status_code != expected:
                raise SystemExit(f"{path} for {kind}: {answered.status_code} {answered.text}")
            seen.setdefault((endpoint, kind), []).append(elapsed)
        app.state.site.store.close()
    return {key: times[20:] for key, times in seen.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.requests < 1:
        parser.error("--requests: must be at least 1")
    seen = measure(args.requests, args.seed)
    print(f"{args.requests} requests per row; microseconds per request")
    print(f"{'endpoint':<14}{'ID':<10}{'median':>9}{'IQR':>16}{'vs missing':>12}")
    for endpoint in ("options", "verify-bogus", "verify-own"):
        base = statistics.median(seen[(endpoint, "missing")])
        for kind in KINDS:
            times = seen[(endpoint, kind)]
            q1, _q2, q3 = statistics.quantiles(times, n=4)
            median = statistics.median(times)
            print(
                f"{endpoint:<14}{kind:<10}{median:>9.0f}{f'{q1:.0f}-{q3:.0f}':>16}"
                f"{median - base:>+12.0f}"
            )


if __name__ == "__main__":
    main()
