"""Phishing watch: find sites that imitate a protected broker, explain why, and act on them."""

from brokerguard.phishing._blocklist import (
    BlockEntry,
    Blocklist,
    BlocklistError,
    load_blocklist,
    write_blocklist,
)
from brokerguard.phishing._brands import (
    Brand,
    BrandRegistry,
    RegistryError,
    default_registry,
    load_brands,
)
from brokerguard.phishing._confusables import ascii_fold, is_mixed_script, skeleton
from brokerguard.phishing._lookalike import dnstwist_lookalikes, generate_lookalikes
from brokerguard.phishing._mail import MailError, MailLink, MailReport, analyse_mail
from brokerguard.phishing._reasons import REASONS, Reason
from brokerguard.phishing._score import THRESHOLD, Finding, error_finding, score_parsed, score_url
from brokerguard.phishing._stix import CampaignLine, StixError, export_stix, read_campaigns
from brokerguard.phishing._takedown import defang, takedown_request
from brokerguard.phishing._unwrap import Hop, untranslate_host, unwrap
from brokerguard.phishing._url import MAX_URL_LENGTH, ParsedURL, URLError, parse_url
from brokerguard.phishing._watch import Alert, LineError, bounded_lines, names_in_line, watch_lines

__all__ = [
    "MAX_URL_LENGTH",
    "REASONS",
    "THRESHOLD",
    "Alert",
    "BlockEntry",
    "Blocklist",
    "BlocklistError",
    "Brand",
    "BrandRegistry",
    "CampaignLine",
    "Finding",
    "Hop",
    "LineError",
    "MailError",
    "MailLink",
    "MailReport",
    "ParsedURL",
    "Reason",
    "RegistryError",
    "StixError",
    "URLError",
    "analyse_mail",
    "ascii_fold",
    "bounded_lines",
    "default_registry",
    "defang",
    "dnstwist_lookalikes",
    "error_finding",
    "export_stix",
    "generate_lookalikes",
    "is_mixed_script",
    "load_blocklist",
    "load_brands",
    "names_in_line",
    "parse_url",
    "read_campaigns",
    "score_parsed",
    "score_url",
    "skeleton",
    "takedown_request",
    "untranslate_host",
    "unwrap",
    "watch_lines",
    "write_blocklist",
]
