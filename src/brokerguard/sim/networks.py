"""Real IPv4 networks that simulated customers and attackers connect from.

Detection keys on IP -> ASN -> country (the RBA hierarchy of Freeman et al. and Wiefling et
al.), so synthetic addresses would teach the guard nothing: every block below is a real
allocation. When the catalogue was built, every usable address of every block was checked
against the GeoLite2 snapshot bundled with geoip2fast (2024-06) for the declared country and
ASN organisation; the tests re-check a sample of addresses per block. Provider attributions
(which VPN brand or Tor operator uses a hosting network) are approximate and say so below.

Weights are relative within a kind. Home and mobile shares follow the rough market shares of
Japanese ISPs and carriers and are spread over each provider's blocks in proportion to their
size, so customers rarely collide on an address by accident (a shared IP is a detection
signal). Hosting, VPN and Tor shares are spread evenly over the blocks, so that every listed
provider and location actually shows up in a run.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import random
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, NamedTuple, get_args

__all__ = [
    "BLOCKS",
    "EXPECTED_ASN",
    "KINDS",
    "Block",
    "NetworkKind",
    "blocks_of",
    "pick_block",
    "random_ip",
    "random_ip_of",
]

NetworkKind = Literal[
    "jp_home", "jp_mobile", "overseas_home", "vpn", "overseas_hosting", "jp_hosting", "tor"
]
KINDS: tuple[NetworkKind, ...] = get_args(NetworkKind)


class Block(NamedTuple):
    """One CIDR block: where it is, what kind of network it is, and how often to draw it."""

    cidr: str
    kind: str
    label: str
    country: str
    weight: float


class _Provider(NamedTuple):
    kind: NetworkKind
    label: str
    country: str
    asn: str  # substring of the ASN organisation name as GeoLite2 spells it
    share: float
    cidrs: tuple[str, ...]


def _p(
    kind: NetworkKind, label: str, country: str, asn: str, share: float, *cidrs: str
) -> _Provider:
    return _Provider(kind, label, country, asn, share, cidrs)


# fmt: off
_PROVIDERS: tuple[_Provider, ...] = (
    # --- Japanese fixed lines. Shares: our rough estimate of FTTH/cable ISP shares, 2024. ------
    _p("jp_home", "OCN / docomo Hikari (NTT Communications)", "JP", "NTT Communications", 0.22,
       "153.128.0.0/10", "180.0.0.0/10", "114.160.0.0/11", "60.32.0.0/12"),
    _p("jp_home", "SoftBank Hikari / Yahoo! BB (SoftBank)", "JP", "SoftBank", 0.18,
       "126.0.0.0/12", "126.32.0.0/12", "126.64.0.0/11", "219.0.0.0/10", "60.64.0.0/10"),
    _p("jp_home", "au Hikari (KDDI)", "JP", "KDDI CORPORATION", 0.16,
       "59.128.0.0/12", "121.104.0.0/13", "125.48.0.0/13", "222.0.0.0/13"),
    # IPv4-over-IPv6 (MAP-E) pool: one IPv4 address is shared by several households, so
    # collisions here are realistic. That v6plus uses this KDDI-group range is from user
    # reports, not from the registry.
    _p("jp_home", "v6plus shared IPv4 (KDDI group)", "JP", "KDDI CORPORATION", 0.04,
       "106.72.0.0/15"),
    _p("jp_home", "So-net / NURO Hikari (Sony Network Communications)", "JP", "Sony Network",
       0.09, "223.132.0.0/14", "118.236.0.0/15", "39.110.0.0/15", "121.2.0.0/15"),
    _p("jp_home", "BIGLOBE", "JP", "BIGLOBE", 0.06,
       "125.192.0.0/13", "133.200.0.0/13", "118.108.0.0/14"),
    _p("jp_home", "J:COM (cable)", "JP", "JCOM", 0.08,
       "110.128.0.0/13", "125.8.0.0/13", "27.136.0.0/13"),
    _p("jp_home", "eo Hikari (OPTAGE)", "JP", "OPTAGE", 0.05,
       "121.80.0.0/13", "180.144.0.0/14", "182.164.0.0/14"),
    _p("jp_home", "commufa (Chubu Telecommunications)", "JP", "Chubu Telecommunications", 0.03,
       "115.36.0.0/14", "180.196.0.0/14"),
    _p("jp_home", "IIJmio (Internet Initiative Japan)", "JP", "Internet Initiative Japan", 0.02,
       "210.138.0.0/16", "121.102.0.0/16"),
    _p("jp_home", "ASAHI Net", "JP", "Asahi Net", 0.02, "183.76.0.0/15"),
    _p("jp_home", "UCOM / ARTERIA", "JP", "ARTERIA Networks", 0.02,
       "113.32.0.0/13", "124.32.0.0/13"),

    # --- Japanese mobile carriers. Shares: rough subscriber shares incl. sub-brands, MVNOs. ---
    _p("jp_mobile", "NTT DOCOMO (sp-mode)", "JP", "NTT DOCOMO", 0.38,
       "1.72.0.0/16", "1.77.0.0/16", "49.99.0.0/16", "49.101.0.0/16", "49.111.0.0/16",
       "27.228.0.0/15", "110.160.0.0/16", "183.72.0.0/16"),
    _p("jp_mobile", "au / UQ mobile (KDDI)", "JP", "KDDI CORPORATION", 0.30,
       "106.128.0.0/10", "27.80.0.0/12", "182.248.0.0/14"),
    # SoftBank announces fixed and mobile space under one ASN; the 126.192/10 region is where
    # its mobile (panda-world.ne.jp) addresses are commonly seen. Approximate split.
    _p("jp_mobile", "SoftBank / Y!mobile (SoftBank)", "JP", "SoftBank", 0.25,
       "126.196.0.0/14", "126.204.0.0/14", "126.212.0.0/14", "126.232.0.0/13",
       "126.252.0.0/14"),
    _p("jp_mobile", "Rakuten Mobile", "JP", "Rakuten Mobile", 0.07,
       "157.192.0.0/16", "133.106.128.0/17", "193.119.128.0/17", "110.165.128.0/17"),

    # --- Consumer ISPs abroad, for travelling customers. Shares: JP outbound destinations. ---
    _p("overseas_home", "KT (Korea)", "KR", "Korea Telecom", 0.12, "14.64.0.0/11", "1.96.0.0/12"),
    _p("overseas_home", "SK Broadband (Korea)", "KR", "SK Broadband", 0.08,
       "180.68.0.0/14", "1.250.0.0/15"),
    _p("overseas_home", "LG U+ (Korea)", "KR", "LG POWERCOMM", 0.08, "112.144.0.0/12"),
    _p("overseas_home", "HiNet (Chunghwa Telecom, Taiwan)", "TW",
       "Data Communication Business Group", 0.13, "218.160.0.0/12", "111.240.0.0/12"),
    _p("overseas_home", "Hawaiian Telcom (Hawaii)", "US", "HAWAIIAN-TELCOM", 0.05,
       "72.234.0.0/16", "141.239.0.0/16"),
    _p("overseas_home", "Spectrum Oceanic (Hawaii)", "US", "TWC-20001-PACWEST", 0.03,
       "66.91.0.0/16"),
    _p("overseas_home", "Comcast Xfinity (US)", "US", "COMCAST", 0.05, "96.128.0.0/10"),
    _p("overseas_home", "Spectrum (Charter, US)", "US", "CHARTER", 0.03, "47.32.0.0/14"),
    _p("overseas_home", "AT&T (US)", "US", "ATT-INTERNET", 0.03, "107.208.0.0/12"),
    _p("overseas_home", "True Online (Thailand)", "TH", "TRUE INTERNET", 0.05, "171.103.0.0/16"),
    _p("overseas_home", "3BB / JasTel (Thailand)", "TH", "JasTel", 0.04, "171.4.0.0/14"),
    _p("overseas_home", "VNPT (Vietnam)", "VN", "VNPT", 0.04, "113.160.0.0/11"),
    _p("overseas_home", "Viettel (Vietnam)", "VN", "Viettel", 0.03, "171.224.0.0/13"),
    _p("overseas_home", "Singtel (Singapore)", "SG", "Singtel", 0.04, "116.14.0.0/16"),
    _p("overseas_home", "StarHub (Singapore)", "SG", "Starhub", 0.02, "116.86.0.0/15"),
    _p("overseas_home", "HKT Netvigator (Hong Kong)", "HK", "HKT", 0.04, "112.118.0.0/15"),
    _p("overseas_home", "HKBN (Hong Kong)", "HK", "Hong Kong Broadband", 0.02, "119.246.0.0/15"),
    _p("overseas_home", "Orange (France)", "FR", "Orange", 0.03, "86.192.0.0/11"),
    _p("overseas_home", "BT (UK)", "GB", "British Telecommunications", 0.02, "86.160.0.0/11"),
    _p("overseas_home", "Virgin Media (UK)", "GB", "Virgin Media", 0.01, "86.0.0.0/12"),
    _p("overseas_home", "Deutsche Telekom (Germany)", "DE", "Deutsche Telekom", 0.02,
       "79.192.0.0/10"),

    # --- Commercial VPN exits. These hosting companies carry the exits of consumer VPNs
    # (Tefincom/PacketHub: NordVPN; 31173: Mullvad; Proton AG: Proton VPN; M247, Datacamp/CDN77,
    # HostRoyale, xTom: many brands). Japanese exits let a foreign operator look domestic. ----
    _p("vpn", "NordVPN exit, Japan (Tefincom)", "JP", "TEFINCOM", 0.08,
       "155.133.76.0/23", "185.221.134.0/23"),
    _p("vpn", "VPN exits, Japan (Datacamp / CDN77)", "JP", "Datacamp", 0.10,
       "138.199.22.0/23", "156.226.8.0/21"),
    _p("vpn", "VPN exits, Japan (M247)", "JP", "M247", 0.08, "37.44.216.0/22", "193.36.124.0/22"),
    _p("vpn", "VPN exits, Japan (HostRoyale)", "JP", "HostRoyale", 0.07, "95.175.64.0/20"),
    _p("vpn", "VPN exits, Japan (xTom)", "JP", "xTom", 0.05, "103.121.208.0/22"),
    _p("vpn", "VPN exits, Japan (Leaseweb)", "JP", "Leaseweb Japan", 0.04, "23.106.224.0/21"),
    _p("vpn", "NordVPN exit, US (Tefincom)", "US", "TEFINCOM", 0.07, "92.118.48.0/21"),
    _p("vpn", "VPN exits, US (M247)", "US", "M247", 0.08, "38.132.96.0/19"),
    _p("vpn", "VPN exits, US (Datacamp / CDN77)", "US", "Datacamp", 0.07, "166.1.8.0/21"),
    _p("vpn", "VPN exits, UK (M247)", "GB", "M247", 0.05, "217.138.128.0/18"),
    _p("vpn", "VPN exits, Singapore (Datacamp / CDN77)", "SG", "Datacamp", 0.07,
       "185.207.164.0/22"),
    _p("vpn", "VPN exits, Hong Kong (Datacamp / CDN77)", "HK", "Datacamp", 0.06,
       "156.146.45.0/24"),
    _p("vpn", "VPN exits, Hong Kong (xTom)", "HK", "xTom", 0.04, "45.78.16.0/20"),
    _p("vpn", "VPN exits, Romania (M247)", "RO", "M247", 0.03, "5.157.192.0/19"),
    _p("vpn", "Mullvad VPN (31173 Services, Sweden)", "SE", "31173 Services", 0.03,
       "193.138.216.0/22"),
    _p("vpn", "Proton VPN (Switzerland)", "CH", "Proton AG", 0.02, "185.159.157.0/24"),

    # --- Cloud and VPS abroad. Shares lean to HK/SG/CN/US, where takeover logins came from. --
    _p("overseas_hosting", "Alibaba Cloud (Hong Kong)", "HK", "Alibaba US Technology", 0.09,
       "47.242.0.0/15"),
    _p("overseas_hosting", "Alibaba Cloud (China)", "CN", "Hangzhou Alibaba", 0.06,
       "47.96.0.0/12", "8.136.0.0/13"),
    _p("overseas_hosting", "Alibaba Cloud (US)", "US", "Alibaba US Technology", 0.02,
       "47.251.0.0/17"),
    _p("overseas_hosting", "Tencent Cloud (China)", "CN", "Shenzhen Tencent", 0.06,
       "43.136.0.0/13", "1.12.0.0/14"),
    _p("overseas_hosting", "Tencent Cloud (Hong Kong)", "HK", "Tencent", 0.06,
       "43.132.128.0/17"),
    _p("overseas_hosting", "Tencent Cloud (Singapore)", "SG", "Tencent", 0.04, "43.160.0.0/17"),
    _p("overseas_hosting", "Vultr (US)", "US", "CHOOPA", 0.06, "108.61.0.0/18", "96.30.192.0/19"),
    _p("overseas_hosting", "Vultr (Singapore)", "SG", "CHOOPA", 0.05, "45.32.96.0/19"),
    _p("overseas_hosting", "Vultr (Korea)", "KR", "CHOOPA", 0.03, "158.247.192.0/18"),
    _p("overseas_hosting", "DigitalOcean (US)", "US", "DIGITALOCEAN", 0.05, "104.131.0.0/16"),
    _p("overseas_hosting", "DigitalOcean (Singapore)", "SG", "DIGITALOCEAN", 0.05,
       "143.198.192.0/19"),
    _p("overseas_hosting", "DigitalOcean (Germany)", "DE", "DIGITALOCEAN", 0.02,
       "64.226.64.0/18"),
    _p("overseas_hosting", "AWS (US)", "US", "AMAZON-02", 0.05, "44.224.0.0/11"),
    _p("overseas_hosting", "AWS (Singapore)", "SG", "AMAZON-02", 0.04, "18.140.0.0/14"),
    _p("overseas_hosting", "AWS (Hong Kong)", "HK", "AMAZON-02", 0.04, "16.162.0.0/15"),
    _p("overseas_hosting", "Linode / Akamai (US)", "US", "Akamai Connected Cloud", 0.03,
       "45.79.0.0/18"),
    _p("overseas_hosting", "Linode / Akamai (Singapore)", "SG", "Akamai Connected Cloud", 0.03,
       "172.104.32.0/19"),
    _p("overseas_hosting", "OVHcloud (France)", "FR", "OVH", 0.04, "51.91.0.0/16"),
    _p("overseas_hosting", "OVHcloud (Canada)", "CA", "OVH", 0.02, "51.222.0.0/16"),
    _p("overseas_hosting", "Hetzner (Germany)", "DE", "Hetzner", 0.03, "116.202.0.0/15"),
    _p("overseas_hosting", "Hetzner (Finland)", "FI", "Hetzner", 0.02,
       "135.181.0.0/16", "65.21.0.0/16"),

    # --- Hosting and VPS inside Japan, rented as domestic-looking proxies. ---------------------
    _p("jp_hosting", "SAKURA Internet (VPS / cloud)", "JP", "SAKURA Internet", 0.14,
       "153.126.0.0/16", "133.242.0.0/16"),
    _p("jp_hosting", "ConoHa / GMO Internet", "JP", "GMO Internet", 0.12,
       "160.251.0.0/17", "150.95.128.0/17"),
    _p("jp_hosting", "AWS Tokyo", "JP", "AMAZON-02", 0.16, "18.176.0.0/13", "52.192.0.0/13"),
    _p("jp_hosting", "Vultr Tokyo", "JP", "CHOOPA", 0.12, "167.179.64.0/18", "202.182.96.0/19"),
    _p("jp_hosting", "IDC Frontier", "JP", "IDC Frontier", 0.08, "164.46.0.0/16"),
    _p("jp_hosting", "Xserver VPS", "JP", "Xserver", 0.08, "162.43.0.0/17"),
    _p("jp_hosting", "KAGOYA", "JP", "KAGOYA", 0.05, "133.18.0.0/16"),
    _p("jp_hosting", "Linode / Akamai Tokyo", "JP", "Akamai Connected Cloud", 0.07,
       "172.104.64.0/18"),
    _p("jp_hosting", "Google Cloud Tokyo", "JP", "GOOGLE-CLOUD", 0.06, "35.243.64.0/18"),
    _p("jp_hosting", "Oracle Cloud Tokyo", "JP", "ORACLE", 0.05, "155.248.160.0/19"),
    _p("jp_hosting", "Alibaba Cloud Tokyo", "JP", "Alibaba US Technology", 0.07,
       "8.211.128.0/18"),

    # --- Tor exits. Networks of organisations that are known to run exit relays; not every
    # address in them is an exit at any given time, which is fine for simulation. -------------
    _p("tor", "Tor exits (Stiftung Erneuerbare Freiheit)", "DE", "Erneuerbare Freiheit", 2.0,
       "185.220.101.0/25", "185.220.102.0/24"),
    _p("tor", "Tor exits (F3 Netze)", "DE", "F3 Netze", 1.0, "185.220.100.0/24"),
    _p("tor", "Tor exits (Nothing to hide, SURF)", "NL", "SURF", 1.0, "192.42.116.0/22"),
    _p("tor", "Tor exits (Emerald Onion)", "US", "EMERALD-ONION", 1.0, "23.129.64.0/24"),
    _p("tor", "Tor exits (Calyx Institute)", "US", "CALYX", 1.0, "162.247.74.0/24"),
    _p("tor", "Tor exits (Quintex)", "US", "QUINTEX", 1.0, "204.8.96.0/22"),
    _p("tor", "Tor exits (Frantech / BuyVM, US)", "US", "PONYNET", 1.0, "198.98.48.0/20"),
    _p("tor", "Tor exits (Frantech / BuyVM, Luxembourg)", "LU", "PONYNET", 1.0,
       "104.244.72.0/21"),
    _p("tor", "Tor exits (DFRI)", "SE", "digitala fri", 1.0, "171.25.193.0/24"),
    _p("tor", "Tor exits (Foundation for Applied Privacy)", "AT", "Applied Privacy", 1.0,
       "109.70.100.0/24"),
    _p("tor", "Tor exits (DotSrc)", "DK", "DotSrc", 1.0, "185.129.61.0/24"),
    _p("tor", "Tor exits (1337 Services)", "NL", "1337 Services", 1.0, "2.58.56.0/24"),
    _p("tor", "Tor exits (MilkyWan)", "FR", "MilkyWan", 1.0, "80.67.167.0/24"),
)
# fmt: on

_SPREAD_BY_SIZE = frozenset({"jp_home", "jp_mobile", "overseas_home"})


def _blocks_of_provider(p: _Provider) -> list[Block]:
    sizes = [ipaddress.IPv4Network(c).num_addresses for c in p.cidrs]
    if p.kind in _SPREAD_BY_SIZE:
        parts = [s / sum(sizes) for s in sizes]
    else:
        parts = [1 / len(sizes)] * len(sizes)
    return [
        Block(c, p.kind, p.label, p.country, p.share * f)
        for c, f in zip(p.cidrs, parts, strict=True)
    ]


BLOCKS: tuple[Block, ...] = tuple(b for p in _PROVIDERS for b in _blocks_of_provider(p))

EXPECTED_ASN: Mapping[str, str] = MappingProxyType({p.label: p.asn for p in _PROVIDERS})
"""Label -> substring of the ASN organisation name that geoip2fast reports for its blocks."""


class _Table(NamedTuple):
    blocks: tuple[Block, ...]
    cum_weights: tuple[float, ...]


def _table(kind: NetworkKind) -> _Table:
    blocks = tuple(b for b in BLOCKS if b.kind == kind)
    return _Table(blocks, tuple(itertools.accumulate(b.weight for b in blocks)))


_TABLES: dict[str, _Table] = {kind: _table(kind) for kind in KINDS}


def _hosts(cidr: str) -> tuple[int, int]:
    # The network and broadcast addresses of a block are never assigned to a subscriber.
    net = ipaddress.IPv4Network(cidr)
    if net.num_addresses < 4:
        raise ValueError(f"block {cidr} is too small to hold usable host addresses")
    return int(net.network_address) + 1, net.num_addresses - 2


# Plain ints per block, so that random_ip is one draw and one format.
_HOSTS: dict[str, tuple[int, int]] = {b.cidr: _hosts(b.cidr) for b in BLOCKS}


def _table_of(kind: NetworkKind) -> _Table:
    try:
        return _TABLES[kind]
    except KeyError:
        raise ValueError(f"unknown network kind {kind!r}; expected one of {KINDS}") from None


def blocks_of(kind: NetworkKind) -> tuple[Block, ...]:
    """All blocks of one kind, in catalogue order."""
    return _table_of(kind).blocks


def pick_block(kind: NetworkKind, rng: random.Random) -> Block:
    """A block of `kind`, drawn by weight; the caller's rng keeps simulations reproducible."""
    blocks, cum = _table_of(kind)
    i = bisect.bisect_right(cum, rng.random() * cum[-1])
    return blocks[min(i, len(blocks) - 1)]  # guards the float edge where the product == total


def random_ip(block: Block, rng: random.Random) -> str:
    """A uniformly drawn usable host address of `block`, as a dotted quad.

    Blocks outside the catalogue work too (computed on first use), so tests and scenario files
    can bring their own networks.
    """
    hosts = _HOSTS.get(block.cidr)
    if hosts is None:
        hosts = _HOSTS[block.cidr] = _hosts(block.cidr)
    first, count = hosts
    n = first + rng.randrange(count)
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def random_ip_of(kind: NetworkKind, rng: random.Random) -> str:
    """An address from a weighted block of `kind`: one call per fresh connection."""
    return random_ip(pick_block(kind, rng), rng)
