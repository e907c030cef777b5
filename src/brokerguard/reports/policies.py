"""Compensation policies and the fee schedule, read from a TOML file a firm can edit.

Firms announced different terms for the victims of the 2025 takeovers (25 Jul 2025): SBI and
Rakuten pay half the loss on shares bought fraudulently, refund fees and add ¥10,000, but not
for sales-only cases; Matsui pays half including forced-sale losses; the full-service majors
restore the account. Terms change and differ per firm, so they are data
(``brokerguard/data/compensation.toml``), not code: a firm edits a copy and passes it as
``--policy FILE``. Loading is strict; an unknown key or a bad value is a
:class:`~brokerguard.reports.errors.ReportError` naming the key.

>>> sorted(load_policies())
['full-restoration', 'matsui-2025', 'sbi-rakuten-2025']
>>> load_policies()["sbi-rakuten-2025"].fee("TSE", 95_000)
99
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta

from brokerguard.events import field_of_error
from brokerguard.money import yen
from brokerguard.reports.errors import ReportError

__all__ = [
    "CompensationPolicy",
    "FeeRule",
    "load_policies",
    "resolve_policies",
    "shipped_policies_path",
]

T = TypeVar("T")
Money = Annotated[float, Meta(ge=0)]
Share = Annotated[float, Meta(ge=0, le=1)]


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class FeeRule(_Strict):
    """The per-order commission of one market: tiers by executed value, or a rate.

    ``tiers`` are ``[limit, fee]`` pairs in increasing order: an order pays the fee of the first
    tier whose limit its value does not exceed, ``above`` (default: the last tier's fee) beyond
    them. Without tiers, ``rate`` × value kept within ``minimum`` and ``maximum``.
    """

    tiers: list[tuple[Money, Money]] = []
    above: Money | None = None
    rate: Share = 0.0
    minimum: Money = 0.0
    maximum: Money | None = None

    def __post_init__(self) -> None:
        limits = [limit for limit, _ in self.tiers]
        if limits != sorted(limits) or len(set(limits)) != len(limits):
            raise ValueError("`tiers` must be in increasing order of their limits")
        if self.maximum is not None and self.maximum < self.minimum:
            raise ValueError("`maximum` must not be below `minimum`")

    def fee(self, value: float) -> int:
        """The fee (whole ¥) of one order of ``value`` yen."""
        if self.tiers:
            fee = next((f for limit, f in self.tiers if value <= limit), None)
            if fee is None:
                fee = self.above if self.above is not None else self.tiers[-1][1]
        else:
            fee = max(self.minimum, self.rate * value)
            if self.maximum is not None:
                fee = min(fee, self.maximum)
        return yen(fee)


class _PolicyTable(_Strict):
    title_en: str
    title_ja: str
    buy_loss_share: Share
    sale_loss_share: Share = 0.0
    refund_fees: bool = False
    withdrawal_share: Share = 0.0
    fixed_jpy: Money = 0.0
    require_buys: bool = False


class _PolicyFile(_Strict):
    policy: dict[str, Any] = {}
    fees: dict[str, Any] = {}


class CompensationPolicy(_Strict):
    """One firm's terms (see the module doc and the shipped TOML for what each share covers).

    ``require_buys``: pay nothing unless an unauthorized buy was executed (sales-only cases
    keep the proceeds in the account). ``fees``: the fee schedule by market that
    :meth:`fee` applies to the unauthorized orders.
    """

    name: str
    title_en: str
    title_ja: str
    buy_loss_share: Share
    sale_loss_share: Share = 0.0
    refund_fees: bool = False
    withdrawal_share: Share = 0.0
    fixed_jpy: Money = 0.0
    require_buys: bool = False
    fees: dict[str, FeeRule] = {}

    def fee(self, market: str, value: float) -> int:
        """The fee of one order in ``market``; 0 for a market the schedule does not list."""
        rule = self.fees.get(market)
        return 0 if rule is None else rule.fee(value)


def shipped_policies_path() -> Path:
    """The policy file shipped with BrokerGuard (a starting point for a firm's own copy)."""
    return Path(str(resources.files("brokerguard.data").joinpath("compensation.toml")))


def _read(path: Path) -> _PolicyFile:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: policy file not found")
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ReportError(f"not valid TOML: {exc}", path=path) from None

    # Tables one by one, so that an error names the policy: `policy.ours.bonus`, not `[...]`.
    def convert(value: object, kind: type[T], where: str) -> T:
        try:
            return msgspec.convert(value, kind)
        except msgspec.ValidationError as exc:
            message = str(exc)
            field = field_of_error(message)
            raise ReportError(
                message.split(" - at `", 1)[0],
                path=path,
                field=f"{where}.{field}" if where and field else where or field,
            ) from None

    top = convert(raw, _PolicyFile, "")
    return _PolicyFile(
        policy={k: convert(v, _PolicyTable, f"policy.{k}") for k, v in top.policy.items()},
        fees={k: convert(v, FeeRule, f"fees.{k}") for k, v in top.fees.items()},
    )


def load_policies(path: Path | None = None) -> dict[str, CompensationPolicy]:
    """The policies of a file (default: the shipped one), by name, in the file's order.

    A file without a ``[fees]`` table uses the shipped fee schedule.
    """
    shipped = shipped_policies_path()
    path = Path(path) if path is not None else shipped
    data = _read(path)
    if not data.policy:
        raise ReportError("no [policy.NAME] table", path=path, field="policy")
    fees = data.fees if data.fees or path == shipped else _read(shipped).fees
    return {
        name: CompensationPolicy(name=name, fees=fees, **msgspec.structs.asdict(table))
        for name, table in data.policy.items()
    }


def resolve_policies(spec: str | None) -> list[CompensationPolicy]:
    """What ``--policy`` names: nothing (every shipped policy), a shipped name, or a file.

    A value that is an existing file or ends in ``.toml`` is read as a policy file (all of its
    policies); anything else must be a shipped policy's name.
    """
    if spec is None:
        return list(load_policies().values())
    if spec.endswith(".toml") or Path(spec).is_file():
        return list(load_policies(Path(spec)).values())
    shipped = load_policies()
    if spec not in shipped:
        raise ReportError(
            f"unknown policy {spec!r}; the shipped policies are {', '.join(shipped)}, "
            "or give the path of a policy .toml file",
            field="policy",
        )
    return [shipped[spec]]
