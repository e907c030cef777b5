"""IP address -> (country, autonomous system, kind of network): the network half of login risk.

Country and AS come from the GeoLite2 snapshot bundled with ``geoip2fast`` (no network access at
run time). The kind of network — ``hosting`` (clouds, VPS, data centres), ``anonymizer`` (VPN
services and Tor exits) or ``isp`` — comes from the AS organisation name and the editable list in
``data/networks.toml``, which stands in for the IP-intelligence feed a broker would buy. The same
file lists address ranges whose kind the AS name cannot tell (Tor exits inside a research
network); a range overrides the name.

A broker adds its own list (its feed's export, the Tor Project's exit list) in a file of the same
format outside the package (:func:`load_networks`; the policy names it as
``[detectors.login] networks``): its entries are added to the shipped ones.
"""

from __future__ import annotations

import ipaddress
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NamedTuple

__all__ = [
    "AddressRanges",
    "NetworkInfo",
    "NetworkLookup",
    "NetworkTable",
    "load_networks",
    "network_kind",
]

NetworkKindName = Literal["isp", "hosting", "anonymizer", "private", "unknown"]


class NetworkInfo(NamedTuple):
    """What a broker can know about an address without asking anyone."""

    country: str  # ISO 3166 alpha-2, "??" when unknown
    asn: str  # AS organisation name as the database spells it, "?" when unknown
    kind: NetworkKindName


@lru_cache(maxsize=1)
def _shipped() -> dict[str, Any]:
    return tomllib.loads(resources.files("brokerguard.data").joinpath("networks.toml").read_text())


PATTERN_LISTS = ("anonymizer", "hosting", "hosting_words")


def network_kind(asn_name: str) -> NetworkKindName:
    """Classify an AS organisation name by the shipped list; unknown names are ``isp`` (most
    logins come from ISPs)."""
    return _shipped_table().kind(asn_name)


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


class NetworkTable:
    """Which networks are hosting or anonymizers: AS name patterns and address ranges.

    Built from tables in the format of ``data/networks.toml`` (the shipped one first, then a
    broker's own), whose lists are joined.
    """

    def __init__(self, tables: list[tuple[dict[str, Any], str]]) -> None:
        lists: dict[str, list[str]] = {name: [] for name in PATTERN_LISTS}
        addresses: dict[str, list[str]] = {}
        for table, source in tables:
            for key, value in table.items():
                if key == "addresses":
                    AddressRanges(value, source)  # checked here, so an error names its file
                    for kind, entries in value.items():
                        addresses.setdefault(kind, []).extend(entries)
                    continue
                if key not in lists:
                    raise ValueError(
                        f"{source}: `{key}`: unknown key (expected one of "
                        f"{', '.join((*PATTERN_LISTS, 'addresses'))})"
                    )
                if not isinstance(value, list):
                    raise ValueError(f"{source}: `{key}` must be a list of names")
                for i, entry in enumerate(value):
                    if not isinstance(entry, str) or not entry.strip():
                        raise ValueError(f"{source}: `{key}[{i}]`: not a name: {entry!r}")
                    lists[key].append(entry.lower())
        self._anonymizer = tuple(lists["anonymizer"])
        self._hosting = tuple(lists["hosting"])
        self._words = tuple(lists["hosting_words"])
        self.ranges = AddressRanges(addresses)
        self._kinds: dict[str, NetworkKindName] = {}

    def kind(self, asn_name: str) -> NetworkKindName:
        """The kind of an AS by its organisation name; names nobody listed are ``isp``."""
        found = self._kinds.get(asn_name)
        if found is not None:
            return found
        if not asn_name or asn_name == "?":
            found = "unknown"
        else:
            name = asn_name.lower() + " "
            if any(p in name for p in self._anonymizer):
                found = "anonymizer"
            elif any(p in name for p in self._hosting) or any(w in name for w in self._words):
                found = "hosting"
            else:
                found = "isp"
        if len(self._kinds) < 1 << 14:
            self._kinds[asn_name] = found
        return found


@lru_cache(maxsize=1)
def _shipped_table() -> NetworkTable:
    return NetworkTable([(_shipped(), "networks.toml")])


def load_networks(path: str | Path) -> NetworkTable:
    """The shipped table plus a broker's own file; ValueError naming the file, the key and the
    entry when the file is not of that format, OSError when it cannot be read."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None
    return NetworkTable([(_shipped(), "networks.toml"), (raw, str(path))])


@lru_cache(maxsize=1)
def _geoip() -> Any:
    from geoip2fast import GeoIP2Fast

    # The "-ipv6" database holds IPv4 and IPv6 networks with their AS names.
    return GeoIP2Fast(geoip2fast_data_file="geoip2fast-asn-ipv6.dat.gz", verbose=False)


class NetworkLookup:
    """Cached lookups. The address database (~0.15 s to load) is loaded once per process and
    shared; ``table`` is the shipped list of networks unless given (see :func:`load_networks`)."""

    def __init__(self, cache_size: int = 1 << 16, table: NetworkTable | None = None) -> None:
        self._db = _geoip()
        self._cache: dict[str, NetworkInfo] = {}
        self._cache_size = cache_size
        self.table = table if table is not None else _shipped_table()

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
            kind = self.table.ranges.kind_of(ip) or self.table.kind(asn)
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
