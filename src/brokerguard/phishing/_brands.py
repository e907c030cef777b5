"""The brand registry: which firms are protected, their real domains and the tokens that name them.

The registry is data, not code, so that a broker's security team can add its own entry (or its
campaign and CDN domains) without touching the scorer. The shipped ``brands.toml`` covers the
major Japanese online brokers; ``load_brands(path)`` reads another file of the same shape.
"""

from __future__ import annotations

import tomllib
from functools import cached_property
from importlib import resources
from pathlib import Path

import msgspec

__all__ = ["Brand", "BrandRegistry", "RegistryError", "default_registry", "load_brands"]


class RegistryError(ValueError):
    """A brand file that cannot be used; the message names the file, the entry and the key."""


class Brand(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One protected firm (see the comment at the top of ``brands.toml`` for each key)."""

    id: str
    name_en: str
    name_ja: str
    domains: list[str]
    descriptions: list[str] = []
    related_domains: list[str] = []
    tokens: list[str] = []
    weak_tokens: list[str] = []
    login_paths: list[str] = []
    legit_urls: list[str] = []


class _File(msgspec.Struct, forbid_unknown_fields=True):
    brand: list[Brand]


class BrandRegistry:
    """Lookups over a list of brands: by id, by legitimate domain, by token, by JPCERT label."""

    def __init__(self, brands: list[Brand]) -> None:
        self.brands: tuple[Brand, ...] = tuple(brands)
        self._by_id = {b.id: b for b in self.brands}

    def __iter__(self):  # noqa: ANN204 - plain iterator over brands
        return iter(self.brands)

    def __len__(self) -> int:
        return len(self.brands)

    def get(self, brand_id: str) -> Brand | None:
        """The brand with this id, or None."""
        return self._by_id.get(brand_id)

    @cached_property
    def official(self) -> dict[str, str]:
        """Registrable domain -> brand id, for the firms' own domains."""
        return {d.lower(): b.id for b in self.brands for d in b.domains}

    @cached_property
    def related(self) -> dict[str, str]:
        """Registrable domain -> brand id, for group companies in other businesses."""
        out: dict[str, str] = {}
        for b in self.brands:
            for d in b.related_domains:
                out.setdefault(d.lower(), b.id)
        return out

    @cached_property
    def strong_tokens(self) -> list[tuple[str, str]]:
        """(token, brand id), longest token first so that the most specific one wins; a token
        two brands share, in brand-id order (never the set's, which changes with each process's
        hash seed: the same URL must get the same brand and reasons every time)."""
        pairs = [(t.lower(), b.id) for b in self.brands for t in b.tokens]
        return sorted(set(pairs), key=lambda p: (-len(p[0]), p[0], p[1]))

    @cached_property
    def weak_tokens(self) -> list[tuple[str, str]]:
        """(token, brand id) for ambiguous tokens, longest first (ties as in
        :attr:`strong_tokens`)."""
        pairs = [(t.lower(), b.id) for b in self.brands for t in b.weak_tokens]
        return sorted(set(pairs), key=lambda p: (-len(p[0]), p[0], p[1]))

    @cached_property
    def by_description(self) -> dict[str, str]:
        """JPCERT/CC ``description`` label -> brand id."""
        return {d: b.id for b in self.brands for d in b.descriptions}


def _validate(brands: list[Brand], source: str) -> None:
    seen: set[str] = set()
    for i, b in enumerate(brands):
        where = f"{source}: brand[{i}] ({b.id!r})"
        if not b.id or not b.id.replace("-", "").isalnum() or b.id != b.id.lower():
            raise RegistryError(f"{where}.id: use lowercase letters, digits and '-'")
        if b.id in seen:
            raise RegistryError(f"{where}.id: duplicate id")
        seen.add(b.id)
        if not b.domains:
            raise RegistryError(f"{where}.domains: at least one legitimate domain is required")
        for key in ("domains", "related_domains"):
            for d in getattr(b, key):
                if "/" in d or ":" in d or d != d.strip().lower() or "." not in d:
                    raise RegistryError(f"{where}.{key}: {d!r} is not a lowercase domain name")
        for p in b.login_paths:
            if not p.startswith("/"):
                raise RegistryError(f"{where}.login_paths: {p!r} must start with '/'")


def _decode(data: bytes, source: str) -> BrandRegistry:
    try:
        raw = tomllib.loads(data.decode("utf-8"))
        parsed = msgspec.convert(raw, type=_File)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{source}: not valid TOML: {exc}") from None
    except msgspec.ValidationError as exc:
        raise RegistryError(f"{source}: {exc}") from None
    _validate(parsed.brand, source)
    return BrandRegistry(parsed.brand)


def load_brands(path: str | Path | None = None) -> BrandRegistry:
    """Read a brand registry file; without a path, the one shipped with BrokerGuard."""
    if path is None:
        return default_registry()
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise RegistryError(f"{p}: cannot read brand file: {exc.strerror}") from None
    return _decode(data, str(p))


_DEFAULT: BrandRegistry | None = None


def default_registry() -> BrandRegistry:
    """The shipped registry, read once."""
    global _DEFAULT
    if _DEFAULT is None:
        data = resources.files("brokerguard.phishing").joinpath("brands.toml").read_bytes()
        _DEFAULT = _decode(data, "brokerguard/phishing/brands.toml")
    return _DEFAULT
