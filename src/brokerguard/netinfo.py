"""IP address -> (country, autonomous system, kind of network): the network half of login risk.

Country and AS come from the GeoLite2 snapshot bundled with ``geoip2fast`` (no network access at
run time). The kind of network — ``hosting`` (clouds, VPS, data centres), ``anonymizer`` (VPN
services and Tor exits) or ``isp`` — comes from the AS organisation name and the editable list in
``data/networks.toml``, which stands in for the IP-intelligence feed a broker would buy. The same
file lists address ranges whose kind the AS name cannot tell (Tor exits inside a research
network); a range overrides the name.
"""

from __future__ import annotations

import ipaddress
import tomllib
from functools import lru_cache
from importlib import resources
from typing import Any, Literal, NamedTuple

__all__ = ["AddressRanges", "NetworkInfo", "NetworkLookup", "network_kind"]

NetworkKindName = Literal["isp", "hosting", "anonymizer", "private", "unknown"]


class NetworkInfo(NamedTuple):
    """What a broker can know about an address without asking anyone."""

    country: str  # ISO 3166 alpha-2, "??" when unknown
    asn: str  # AS organisation name as the database spells it, "?" when unknown
    kind: NetworkKindName


@lru_cache(maxsize=1)
def _shipped() -> dict[str, Any]:
    return tomllib.loads(resources.files("brokerguard.data").joinpath("networks.toml").read_text())


@lru_cache(maxsize=1)
def _patterns() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    raw = _shipped()
    return (
        tuple(s.lower() for s in raw.get("anonymizer", [])),
        tuple(s.lower() for s in raw.get("hosting", [])),
        tuple(s.lower() for s in raw.get("hosting_words", [])),
    )


@lru_cache(maxsize=4096)
def network_kind(asn_name: str) -> NetworkKindName:
    """Classify an AS organisation name; unknown names are ``isp`` (most logins come from ISPs)."""
    if not asn_name or asn_name == "?":
        return "unknown"
    name = asn_name.lower() + " "
    anonymizers, hosting, words = _patterns()
    if any(p in name for p in anonymizers):
        return "anonymizer"
    if any(p in name for p in hosting) or any(w in name for w in words):
        return "hosting"
    return "isp"


class AddressRanges:
    """Address ranges with a kind of network, looked up by prefix length (a handful of lengths,
    however many ranges: a Tor exit list of thousands of single addresses is one length)."""

    def __init__(self, table: dict[str, Any], source: str = "networks.toml") -> None:
        self._by_length: dict[tuple[int, int], dict[int, NetworkKindName]] = {}
        if not isinstance(table, dict):
            raise ValueError(f"{source}: [addresses] must be a table")
        for kind, entries in table.items():
            if kind not in ("anonymizer", "hosting"):
                raise ValueError(
                    f"{source}: addresses.{kind}: unknown kind (expected anonymizer or hosting)"
                )
            if not isinstance(entries, list):
                raise ValueError(f"{source}: addresses.{kind} must be a list of addresses")
            for i, entry in enumerate(entries):
                try:
                    if not isinstance(entry, str):
                        raise TypeError("not a string")  # ip_network(7) would be 0.0.0.7
                    net = ipaddress.ip_network(entry, strict=False)
                except (TypeError, ValueError) as exc:
                    raise ValueError(
                        f"{source}: addresses.{kind}[{i}]: not an address or prefix: {entry!r}"
                    ) from exc
                key = (net.version, net.prefixlen)
                self._by_length.setdefault(key, {})[int(net.network_address)] = kind
        # the most specific first: a single address listed inside a listed prefix wins
        self._lengths = sorted(self._by_length.items(), key=lambda kv: -kv[0][1])

    def kind_of(self, ip: str) -> NetworkKindName | None:
        """The listed kind of ``ip``, the most specific range first; None when not listed."""
        if not self._lengths:
            return None
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        bits = address.max_prefixlen
        value = int(address)
        for (version, length), ranges in self._lengths:
            if version == address.version:
                found = ranges.get(value >> (bits - length) << (bits - length))
                if found is not None:
                    return found
        return None


@lru_cache(maxsize=1)
def _address_ranges() -> AddressRanges:
    return AddressRanges(_shipped().get("addresses", {}))


class NetworkLookup:
    """Cached lookups; one instance per process (loading the database takes ~0.15 s)."""

    def __init__(self, cache_size: int = 1 << 16) -> None:
        from geoip2fast import GeoIP2Fast

        # The "-ipv6" database holds IPv4 and IPv6 networks with their AS names.
        self._db = GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz", verbose=False)
        self._cache: dict[str, NetworkInfo] = {}
        self._cache_size = cache_size
        self._ranges = _address_ranges()

    def __call__(self, ip: str) -> NetworkInfo:
        found = self._cache.get(ip)
        if found is not None:
            return found
        result = self._db.lookup(ip)
        if getattr(result, "is_private", False):
            info = NetworkInfo("??", "private", "private")
        else:
            country = result.country_code or "??"
            if len(country) != 2 or not country.isalpha():
                country = "??"  # the database says "--" for addresses it does not know
            asn = (result.asn_name or "?").removeprefix("AS-")
            kind = self._ranges.kind_of(ip) or network_kind(asn)
            info = NetworkInfo(country, asn, kind)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()  # a crude bound; addresses recur in bursts, so this rarely bites
        self._cache[ip] = info
        return info


_shared: NetworkLookup | None = None


def shared_lookup() -> NetworkLookup:
    """The process-wide lookup, created on first use."""
    global _shared
    if _shared is None:
        _shared = NetworkLookup()
    return _shared
