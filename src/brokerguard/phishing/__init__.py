"""Phishing watch: find sites that imitate a protected broker, explain why, and act on them."""

from brokerguard.phishing._brands import (
    Brand,
    BrandRegistry,
    RegistryError,
    default_registry,
    load_brands,
)
from brokerguard.phishing._confusables import ascii_fold, is_mixed_script, skeleton
from brokerguard.phishing._lookalike import dnstwist_lookalikes, generate_lookalikes
from brokerguard.phishing._reasons import REASONS, Reason
from brokerguard.phishing._score import THRESHOLD, Finding, error_finding, score_parsed, score_url
from brokerguard.phishing._unwrap import Hop, untranslate_host, unwrap
from brokerguard.phishing._url import MAX_URL_LENGTH, ParsedURL, URLError, parse_url

__all__ = [
    "MAX_URL_LENGTH",
    "REASONS",
    "THRESHOLD",
    "Brand",
    "BrandRegistry",
    "Finding",
    "Hop",
    "ParsedURL",
    "Reason",
    "RegistryError",
    "URLError",
    "ascii_fold",
    "default_registry",
    "dnstwist_lookalikes",
    "error_finding",
    "generate_lookalikes",
    "is_mixed_script",
    "load_brands",
    "parse_url",
    "score_parsed",
    "score_url",
    "skeleton",
    "untranslate_host",
    "unwrap",
]
