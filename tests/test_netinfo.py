"""Network lookup and user-agent keys: the two feature hierarchies the login model stands on."""

from __future__ import annotations

import random

import pytest
from engine_helpers import HEADLESS_UA, chrome_on_windows, device

from brokerguard.engine import BrokerGuard
from brokerguard.engine.detectors.login import device_keys
from brokerguard.engine.policy import PolicyError, default_policy_path, load_policy
from brokerguard.netinfo import (
    AddressRanges,
    NetworkInfo,
    NetworkLookup,
    load_networks,
    network_kind,
    shared_lookup,
)
from brokerguard.sim.devices import attacker_user_agents
from brokerguard.sim.networks import KINDS, blocks_of, random_ip
from brokerguard.useragent import parse_user_agent


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("AMAZON-02", "hosting"),
        ("Alibaba US Technology Co., Ltd.", "hosting"),
        ("Shenzhen Tencent Computer Systems Company Limited", "hosting"),
        ("CHOOPA", "hosting"),
        ("DIGITALOCEAN-ASN", "hosting"),
        ("SAKURA Internet Inc.", "hosting"),
        ("GMO Internet Group, Inc.", "hosting"),
        ("Datacamp Limited", "hosting"),
        ("Example Hosting Ltd", "hosting"),  # by the generic words
        ("Some Cloud Services LLC", "hosting"),
        ("Proton AG", "anonymizer"),
        ("31173 Services AB", "anonymizer"),
        ("Stiftung Erneuerbare Freiheit", "anonymizer"),
        ("EMERALD-ONION", "anonymizer"),
        ("NTT Communications Corporation", "isp"),
        ("NTT DOCOMO, INC.", "isp"),
        ("KDDI CORPORATION", "isp"),
        ("SoftBank Corp.", "isp"),
        ("Sony Network Communications Inc.", "isp"),
        ("Korea Telecom", "isp"),
        ("Chunghwa Telecom Co., Ltd.", "isp"),
        ("", "unknown"),
        ("?", "unknown"),
    ],
)
def test_network_kind_classifies_as_names(name, kind):
    assert network_kind(name) == kind


EXPECTED_KIND = {
    "jp_home": {"isp"},
    "jp_mobile": {"isp"},
    "overseas_home": {"isp"},
    "overseas_hosting": {"hosting"},
    "jp_hosting": {"hosting"},
    "vpn": {"hosting", "anonymizer"},
    "tor": {"hosting", "anonymizer"},
}
SURF = "192.42.116.0/22"  # Tor exits of "Nothing to hide", announced by SURF B.V.


@pytest.fixture(scope="module")
def lookup() -> NetworkLookup:
    return shared_lookup()


@pytest.mark.parametrize("kind", KINDS)
def test_lookup_of_every_catalogue_block_gives_its_country_and_kind(lookup, kind):
    assert set(EXPECTED_KIND) == set(KINDS)
    rng = random.Random(kind)
    wrong = []
    for b in blocks_of(kind):
        for _ in range(3):
            info = lookup(random_ip(b, rng))
            if info.country != b.country or info.kind not in EXPECTED_KIND[kind]:
                wrong.append((b.label, b.cidr, info))
    assert wrong == []


def test_tor_exits_at_surf_are_anonymizers_by_their_address_range(lookup):
    # GeoLite2 names the AS "SURF B.V.", a research network: no AS-name pattern can single out
    # the exits, so data/networks.toml lists their range under [addresses].
    (b,) = [b for b in blocks_of("tor") if b.cidr == SURF]
    for seed in range(5):
        info = lookup(random_ip(b, random.Random(seed)))
        assert (info.asn, info.kind) == ("SURF B.V.", "anonymizer")
    # the rest of SURF's network is still what its name says
    assert lookup("192.42.120.1") == NetworkInfo("NL", "SURF B.V.", "isp")


def test_address_ranges_override_by_the_most_specific_entry():
    ranges = AddressRanges(
        {
            "hosting": ["198.51.100.0/24", "2001:db8::/32"],
            "anonymizer": ["198.51.100.7", "203.0.113.0/25"],
        }
    )
    assert ranges.kind_of("198.51.100.7") == "anonymizer"  # the single address inside the /24
    assert ranges.kind_of("198.51.100.8") == "hosting"
    assert ranges.kind_of("203.0.113.127") == "anonymizer"
    assert ranges.kind_of("203.0.113.128") is None
    assert ranges.kind_of("2001:db8:1::5") == "hosting"
    assert ranges.kind_of("2001:db9::5") is None
    assert ranges.kind_of("not an address") is None
    assert AddressRanges({}).kind_of("198.51.100.7") is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"anonymizer": ["192.0.2.0/33"]}, "addresses.anonymizer[0]: not an address or prefix"),
        ({"hosting": ["10.0.0.0/8", 7]}, "addresses.hosting[1]: not an address or prefix"),
        ({"isp": ["192.0.2.1"]}, "addresses.isp: unknown kind"),
        ({"hosting": "192.0.2.1"}, "addresses.hosting must be a list"),
    ],
)
def test_bad_address_ranges_name_the_entry(table, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        AddressRanges(table)


@pytest.mark.parametrize("ip", ["192.168.1.10", "10.20.30.40", "127.0.0.1"])
def test_private_addresses_are_private(lookup, ip):
    assert lookup(ip) == ("??", "private", "private")


def test_ipv6_addresses_are_looked_up(lookup):
    aws_tokyo = lookup("2406:da14:1234::5")
    assert (aws_tokyo.country, aws_tokyo.kind) == ("JP", "hosting")
    ocn = lookup("2400:4050:1234::5")
    assert (ocn.country, ocn.kind) == ("JP", "isp")


def test_unknown_addresses_have_the_documented_unknown_country(lookup):
    assert lookup("2001:db8::1").country == "??"


def test_attacker_tooling_parses_to_what_no_customer_sends():
    kinds = {parse_user_agent(ua) for ua in attacker_user_agents(random.Random(3), 200)}
    assert ("Headless Chrome", "Linux", "pc") in kinds
    assert any(browser == "python-requests" and device == "other" for browser, _, device in kinds)
    assert parse_user_agent(HEADLESS_UA)[0] == "Headless Chrome"


def test_device_keys_share_the_browser_level_across_an_update_and_split_across_devices():
    old, new = device_keys(chrome_on_windows(134)), device_keys(chrome_on_windows(136))
    assert old[:3] == new[:3] and old[3] != new[3]
    phone = device_keys(device(1, "phone"))
    assert phone[0] != old[0]  # k:phone vs k:pc
    assert all(key[1] == ":" for key in (*old, *phone))


# --- a broker's own networks file ---------------------------------------------------------------

OWN_NETWORKS = """
hosting = ["ntt communications"]   # say, the broker's feed calls this one a data centre
[addresses]
anonymizer = ["203.0.113.0/24"]
"""


def test_a_brokers_own_networks_file_adds_to_the_shipped_list(tmp_path) -> None:
    path = tmp_path / "own.toml"
    path.write_text(OWN_NETWORKS, encoding="utf-8")
    table = load_networks(path)
    assert table.kind("NTT Communications Corporation") == "hosting"
    assert table.kind("AMAZON-02") == "hosting"  # the shipped list still applies
    assert table.kind("Proton AG") == "anonymizer"
    assert table.ranges.kind_of("203.0.113.9") == "anonymizer"
    assert table.ranges.kind_of("192.42.116.20") == "anonymizer"  # the shipped range too
    lookup = NetworkLookup(table=table)
    assert lookup("203.0.113.9").kind == "anonymizer"
    assert network_kind("NTT Communications Corporation") == "isp"  # nobody else changed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('hostng = ["x"]', "`hostng`: unknown key"),
        ("hosting = [3]", "`hosting[0]`: not a name"),
        ('hosting = "x"', "`hosting` must be a list"),
        ('[addresses]\nanonymizer = ["not an address"]', "addresses.anonymizer[0]"),
        ("hosting = [", "not valid TOML"),
    ],
)
def test_a_bad_networks_file_is_an_error_naming_the_file_and_the_entry(
    tmp_path, text: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        load_networks(path)
    assert str(path) in str(caught.value) and message in str(caught.value)


def test_the_policy_names_the_networks_file_beside_it(tmp_path) -> None:
    (tmp_path / "own.toml").write_text(OWN_NETWORKS, encoding="utf-8")
    source = default_policy_path().read_text(encoding="utf-8")
    policy_file = tmp_path / "policy.toml"
    policy_file.write_text(
        source.replace('# networks = "my-networks.toml"', 'networks = "own.toml"'),
        encoding="utf-8",
    )
    engine = BrokerGuard(load_policy(policy_file))
    assert engine.lookup("203.0.113.9").kind == "anonymizer"
    assert BrokerGuard().lookup("203.0.113.9").kind != "anonymizer"

    policy_file.write_text(
        source.replace('# networks = "my-networks.toml"', 'networks = "missing.toml"'),
        encoding="utf-8",
    )
    with pytest.raises(PolicyError) as caught:
        BrokerGuard(load_policy(policy_file))
    assert caught.value.field == "detectors.login.networks"
    assert "missing.toml" in str(caught.value)
