"""The network catalogue: real blocks (checked against geoip2fast), weighted, reproducible draws."""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections import Counter

import pytest
from geoip2fast import GeoIP2Fast

from brokerguard.sim.networks import (
    BLOCKS,
    EXPECTED_ASN,
    KINDS,
    Block,
    blocks_of,
    pick_block,
    random_ip,
    random_ip_of,
)


@pytest.fixture(scope="module")
def geo() -> GeoIP2Fast:
    return GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn.dat.gz", verbose=False)


def _probe_addresses(cidr: str) -> list[str]:
    """First usable, middle and last usable host, plus a few in between."""
    net = ipaddress.IPv4Network(cidr)
    first, last = int(net.network_address) + 1, int(net.broadcast_address) - 1
    points = {first, (first + last) // 2, last} | {
        first + (last - first) * i // 8 for i in range(8)
    }
    return [str(ipaddress.IPv4Address(p)) for p in sorted(points)]


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: f"{b.kind}:{b.cidr}")
def test_block_resolves_to_declared_country_and_asn(geo: GeoIP2Fast, block: Block) -> None:
    expected_asn = EXPECTED_ASN[block.label]
    for ip in _probe_addresses(block.cidr):
        r = geo.lookup(ip)
        assert r.country_code == block.country, (ip, block, r.country_code)
        assert expected_asn in r.asn_name, (ip, block, r.asn_name)


def test_catalogue_is_large_and_covers_every_kind() -> None:
    assert len(BLOCKS) >= 40
    assert {b.kind for b in BLOCKS} == set(KINDS)
    for kind in KINDS:
        assert len(blocks_of(kind)) >= 5, kind
        assert all(b.kind == kind for b in blocks_of(kind))


def test_blocks_are_well_formed_and_disjoint() -> None:
    nets = []
    for b in BLOCKS:
        net = ipaddress.IPv4Network(b.cidr)  # strict: host bits must be zero
        assert net.is_global, b
        assert net.num_addresses >= 128, b
        assert b.weight > 0, b
        assert len(b.country) == 2 and b.country.isupper(), b
        assert b.label in EXPECTED_ASN, b
        nets.append(net)
    for a, b in itertools.combinations(nets, 2):
        assert not a.overlaps(b), (a, b)


def test_jp_kinds_are_in_japan_and_overseas_kinds_are_not() -> None:
    for kind in ("jp_home", "jp_mobile", "jp_hosting"):
        assert {b.country for b in blocks_of(kind)} == {"JP"}, kind
    for kind in ("overseas_home", "overseas_hosting", "tor"):
        assert "JP" not in {b.country for b in blocks_of(kind)}, kind
    vpn_countries = {b.country for b in blocks_of("vpn")}
    assert "JP" in vpn_countries and len(vpn_countries) >= 4


def test_draws_are_reproducible() -> None:
    def draws(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [random_ip_of(kind, rng) for kind in KINDS for _ in range(50)]

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_random_ip_is_a_usable_host_of_its_block() -> None:
    rng = random.Random(1)
    for b in BLOCKS:
        net = ipaddress.IPv4Network(b.cidr)
        for _ in range(30):
            ip = ipaddress.IPv4Address(random_ip(b, rng))
            assert ip in net, (ip, b)
            assert ip not in (net.network_address, net.broadcast_address)


def test_random_ip_covers_a_tiny_block_and_accepts_foreign_blocks() -> None:
    rng = random.Random(2)
    block = Block("192.0.2.0/30", "vpn", "documentation", "ZZ", 1.0)
    assert {random_ip(block, rng) for _ in range(200)} == {"192.0.2.1", "192.0.2.2"}


def test_random_ip_spreads_over_the_block() -> None:
    rng = random.Random(3)
    block = Block("10.0.0.0/16", "jp_home", "test", "JP", 1.0)
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    offsets = [int(ipaddress.IPv4Address(random_ip(block, rng))) - base for _ in range(6000)]
    thirds = Counter(o * 3 // 65536 for o in offsets)
    assert sorted(thirds) == [0, 1, 2]
    assert all(1800 < c < 2200 for c in thirds.values()), thirds


@pytest.mark.parametrize("kind", ["jp_home", "jp_mobile", "vpn"])
def test_pick_block_follows_weights(kind: str) -> None:
    rng = random.Random(4)
    n = 30_000
    blocks = blocks_of(kind)  # type: ignore[arg-type]
    total = sum(b.weight for b in blocks)
    expected: Counter[str] = Counter()
    for b in blocks:
        expected[b.label] += b.weight / total
    seen = Counter(pick_block(kind, rng).label for _ in range(n))  # type: ignore[arg-type]
    for label, share in expected.items():
        assert seen[label] / n == pytest.approx(share, abs=0.015), label


def test_market_leaders_dominate_home_and_mobile() -> None:
    rng = random.Random(5)
    home = Counter(pick_block("jp_home", rng).label for _ in range(10_000))
    assert home.most_common(1)[0][0].startswith("OCN")
    mobile = Counter(pick_block("jp_mobile", rng).label for _ in range(10_000))
    assert mobile.most_common(1)[0][0].startswith("NTT DOCOMO")
    assert mobile["Rakuten Mobile"] < mobile["SoftBank / Y!mobile (SoftBank)"]


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown network kind"):
        pick_block("moon", random.Random(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown network kind"):
        blocks_of("moon")  # type: ignore[arg-type]
