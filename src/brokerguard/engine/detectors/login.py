"""Login risk: how much more likely is this sign-in an attacker's than the account holder's?

The model follows Freeman et al., "Who are you? A statistical approach to measuring user
authenticity" (NDSS 2016): features form hierarchies — IP -> AS -> country -> kind of network,
and user agent -> browser -> OS -> device kind — and the risk is the ratio of the probability of
the observed values under an attacker to that under the account's own history, level by level.
The account's history is smoothed toward the whole population, and the chance of a never-seen
value is estimated from how often this account shows new values at that level (a Pitman-Yor
style estimate: a customer on a mobile carrier whose address changes every time is not suspicious
for a new address; one who always signs in from the same home line is). A new account has no
history, so every ratio starts at 1: it is not punished for being new, only for looking like
attack infrastructure (hosting, anonymizers, addresses shared with other unfamiliar sign-ins).

Infrastructure signals sit beside the per-account model: accounts that signed in unfamiliarly from
the same address, AS or user agent in a window, failed credential checks, impossible travel.
"""

from __future__ import annotations

import math
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterable
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from brokerguard.engine.policy import LoginParams
from brokerguard.engine.signals import Signal
from brokerguard.engine.state import (
    LEVELS,
    AccountState,
    EntityState,
    PopulationState,
    State,
    extend_mark,
    prune_window,
    run_last,
    seen_at,
    touch_window,
    window_count,
)
from brokerguard.netinfo import NetworkInfo
from brokerguard.useragent import DEVICE_KINDS, parse_user_agent

if TYPE_CHECKING:
    from brokerguard.phishing import Blocklist

__all__ = [
    "FALLBACK",
    "LoginFeatures",
    "LoginRisk",
    "ReferrerCheck",
    "cookie_key",
    "device_keys",
    "login_features",
    "note_canary_hit",
    "profile_keys",
]

FINE_LEVELS = ("i", "u", "d")  # ip, user-agent string, device cookie: values with many members
MAX_FINE_VALUES = 6  # per fine level and account; the least-used value is forgotten first
NO_COOKIE = "d:-"
# Population keys (not profile keys): accounts whose first sign-in the engine learned came
# without a device cookie, and with one (see LoginRisk._first_cookie).
FIRST_NO_COOKIE = "f:-"
FIRST_COOKIE = "f:+"
# Population keys: accounts that signed in with a passkey, and those of them that also signed in
# with the password from a browser they had used the passkey in (see
# LoginRisk.password_fallback). A sign-in's learned keys carry FALLBACK when it was one of those
# password sign-ins, so that unlearning it takes it back.
PASSKEY_ACCOUNTS = "x:passkey"
FALLBACK_ACCOUNTS = "x:password"
FALLBACK = FALLBACK_ACCOUNTS
PASSKEY_BROWSERS_KEPT = 4  # per account, the latest
NETWORK_KINDS = ("isp", "hosting", "anonymizer", "private", "unknown")
NETWORK_TOPS = tuple(f"n:{kind}" for kind in NETWORK_KINDS)
DEVICE_TOPS = tuple(f"k:{kind}" for kind in DEVICE_KINDS)
COINCIDENCE = 1e-3  # chance that an attacker's own address, browser or cookie is the customer's
COUNTRY_PRIOR = 50.0  # accounts' worth of "customers are where attackers are" before any data
CLOUD_KINDS = ("n:hosting", "n:anonymizer")  # networks rented by customers and criminals alike
# Where customers sign in from before the broker's own sign-ins say it (the policy's
# ``customer_network`` overrides it; see LoginRisk._p_pop_top)
CUSTOMER_NETWORK = {
    "isp": 0.965,
    "hosting": 0.02,
    "anonymizer": 0.005,
    "private": 0.005,
    "unknown": 0.005,
}


class LoginFeatures(NamedTuple):
    """The observable parts of a sign-in (or of a session's first request), as hierarchy keys."""

    ip: str
    net: NetworkInfo
    ua_key: str
    network: tuple[str, str, str, str]  # n:kind, c:kind/country, a:kind/country/AS, i:ip
    device: tuple[str, str, str, str]  # k:kind, o:kind/os, b:kind/os/browser, u:hash
    cookie: str  # d:hash, or NO_COOKIE
    hour: int  # 0-23 in the broker's time zone (the timestamp's own offset)


def _short_hash(text: str) -> str:
    return f"{zlib.crc32(text.encode()):08x}"


@lru_cache(maxsize=8192)
def _network_keys(net: NetworkInfo) -> tuple[str, str, str]:
    # Cached, so every account's profile shares one string object per network (memory).
    kind = net.kind
    return (f"n:{kind}", f"c:{kind}/{net.country}", f"a:{kind}/{net.country}/{net.asn}")


@lru_cache(maxsize=8192)
def device_keys(user_agent: str) -> tuple[str, str, str, str]:
    browser, os, kind = parse_user_agent(user_agent)
    return (
        f"k:{kind}",
        f"o:{kind}/{os}",
        f"b:{kind}/{os}/{browser}",
        f"u:{_short_hash(user_agent)}",
    )


def cookie_key(cookie: str | None) -> str:
    return NO_COOKIE if not cookie else f"d:{_short_hash(cookie)}"


def login_features(
    ip: str, user_agent: str, cookie: str | None, ts: datetime, net: NetworkInfo
) -> LoginFeatures:
    return LoginFeatures(
        ip=ip,
        net=net,
        ua_key=_short_hash(user_agent),
        network=(*_network_keys(net), f"i:{ip}"),
        device=device_keys(user_agent),
        cookie=cookie_key(cookie),
        hour=ts.hour,
    )


def _clip(x: float, cap: float) -> float:
    return cap if x > cap else (-cap if x < -cap else x)


def profile_keys(f: LoginFeatures) -> tuple[str, ...]:
    """The keys a sign-in adds to the account's profile (:meth:`LoginRisk.learn`), and takes
    back out (:meth:`LoginRisk.unlearn`)."""
    return (*f.network, *f.device, f.cookie)


def note_canary_hit(ent: EntityState, origin: str, now: float) -> None:
    """Add a canary hit to an address's (or network's) record: the run of hits, and the latest
    hit's origin (a late hit's is older)."""
    if now >= run_last(ent.canary):
        ent.canary_origin = origin
    ent.canary = extend_mark(ent.canary, now)


class LoginRisk:
    """The login detector: familiarity against the account's history plus infrastructure."""

    def __init__(self, state: State, params: LoginParams) -> None:
        self.state = state
        self.p = params
        attacker = {"hosting": 0.5, "anonymizer": 0.25, "isp": 0.2, "private": 0.02}
        attacker.update(params.attacker_network)
        self.attacker_network = attacker
        customer = {**CUSTOMER_NETWORK, **params.customer_network}
        self.customer_network = {f"n:{k}": v for k, v in customer.items()}
        reuse = {"ip": 0.02, "ua": 0.4, "cookie": 0.05, "no_cookie": 0.5}
        reuse.update(params.attacker_reuse)
        self.reuse = {"i": reuse["ip"], "u": reuse["ua"], "d": reuse["cookie"]}
        self.no_cookie = reuse["no_cookie"]
        self._pop: PopulationState | None = None
        self.on_learn: Callable[[tuple[str, ...], int], None] | None = None
        """Told the population keys and the hour of each trusted sign-in learned (campaign stage:
        the population is counted over all partitions there)."""
        self.on_entity: Callable[..., None] | None = None
        """Told each change to the shared-infrastructure records (``unfamiliar``, ``failure``,
        ``canary``; campaign stage: they are kept over all partitions there)."""

    # --- population ------------------------------------------------------------------------
    @property
    def population(self) -> PopulationState:
        pop = self._pop
        if pop is None:
            pop = self.state.get("population", "all")
            if pop is None:
                pop = PopulationState(hours=[0] * 24)
                self.state.put("population", "all", pop)
            self._pop = pop
        return pop

    def take_population(self, shared: PopulationState) -> None:
        """The counts over all partitions replace this partition's (campaign stage, at each
        epoch). What is derived from them on reading (the home country) stays this engine's."""
        pop = self.population
        pop.n = shared.n
        pop.counts = dict(shared.counts)
        pop.hours = list(shared.hours)
        self.state.put("population", "all", pop)

    def take_entity(self, key: str, shared: EntityState) -> None:
        """An address's (AS's, user agent's) record as kept over all partitions replaces this
        partition's (campaign stage, at each epoch); an analyst's confirmation stays."""
        mine = self.state.get("entity", key)
        if mine is not None:
            shared.confirmed_fraud = max(shared.confirmed_fraud, mine.confirmed_fraud)
        self.state.put("entity", key, shared)

    def _p_pop(self, key: str, parent_count: int) -> float:
        return (self.population.counts.get(key, 0) + 0.5) / (parent_count + 1.0)

    def _accounts(self, tops: tuple[str, ...]) -> int:
        """How many (account, kind) pairs the population holds over one hierarchy's top level:
        the population counts each account once per value (see :meth:`learn`)."""
        counts = self.population.counts
        return sum(counts.get(top, 0) for top in tops)

    def _p_pop_top(self, top: str) -> float:
        """The population's share of a kind of network (or device), over the accounts learned.

        A kind of network starts from the policy's belief (``customer_network``, worth
        ``customer_network_weight`` accounts), as the country level starts from the attackers'
        geography: with a few dozen accounts learned — the first hours of a new deployment, a
        small broker — the counts alone are noise, and the first thieves' sign-ins, allowed
        because nothing was known yet, would make cloud exits look common to the next ones.
        """
        pop = self.population
        prior = self.customer_network.get(top)
        total = self._accounts(DEVICE_TOPS if top[0] == "k" else NETWORK_TOPS)
        weight = self.p.customer_network_weight
        if prior is None or weight <= 0:
            return self._p_pop(top, total)
        return (pop.counts.get(top, 0) + weight * prior) / (total + weight)

    # --- the familiarity model -----------------------------------------------------------------
    def _novelty(self, acc: AccountState, level: str, parent_count: int) -> float:
        """Chance that this account shows a value it never showed at ``level`` (Pitman-Yor)."""
        p = self.p
        distinct = min(acc.distinct[LEVELS.index(level)] if acc.distinct else 0, parent_count)
        # User-agent strings change with every browser update, every few weeks: a new string
        # under a familiar browser is expected far more often than a new network.
        theta = p.ua_novelty_concentration if level == "u" else p.novelty_concentration
        return min(1.0, (theta + p.novelty_discount * distinct) / (parent_count + theta))

    def _hierarchy(
        self,
        acc: AccountState,
        keys: tuple[str, ...],
        top_attacker: float | None,
        geography: float | None = None,
    ) -> tuple[float, list[str]]:
        """Summed log-ratio over one hierarchy, and the levels that were new to the account."""
        seen = acc.seen
        pop = self.population
        cap = self.p.level_cap
        w = self.p.population_weight
        total = 0.0
        new_levels: list[str] = []
        # The top level (kind of network / of device) is smoothed toward the population.
        top = keys[0]
        p_pop_top = self._p_pop_top(top)
        p_user = (seen.get(top, 0) + w * p_pop_top) / (acc.n + w)
        p_att = top_attacker if top_attacker is not None else p_pop_top
        # A policy may give a kind of network no chance at all on one side (a share of 0 or 1):
        # the ratio is then as strong as a level may be, as below, not a division by zero.
        total += _clip(math.log(max(p_att, 1e-9) / max(p_user, 1e-9)), cap)
        parent_count = seen.get(top, 0)
        parent_pop = pop.counts.get(top, 0)
        if parent_count == 0:
            new_levels.append(top[0])
        for key in keys[1:]:
            level = key[0]
            if parent_count == 0:
                if level == "c" and geography is not None:
                    # No history under this kind of network: where attackers are vs. where
                    # this broker's customers are.
                    p_country = self._p_country(key, geography)
                    total += _clip(math.log(max(geography, 1e-9) / max(p_country, 1e-9)), cap)
                break  # the parent is already new; a new child tells nothing more
            count = seen.get(key, 0)
            p_new = self._novelty(acc, level, parent_count)
            fine = level in FINE_LEVELS
            # Pitman-Yor predictive: a seen value's own share, plus its share of the mass kept
            # for "something new", which follows the population (the base measure).
            if fine:
                p_base = 1.0
                p_att = COINCIDENCE if count > 0 else 1.0
            elif level == "c" and geography is not None:
                p_att = self._attacker_country(key, top, parent_pop, geography)
                p_base = (pop.counts.get(key, 0) + COUNTRY_PRIOR * geography) / (
                    parent_pop + COUNTRY_PRIOR
                )
            else:
                p_base = p_att = self._p_pop(key, parent_pop)
            p_user = (1.0 - p_new) * count / parent_count + p_new * p_base
            if count == 0:
                new_levels.append(level)
            total += _clip(math.log(max(p_att, 1e-9) / max(p_user, 1e-9)), cap)
            parent_count = count
            parent_pop = pop.counts.get(key, 0)
        return total, new_levels

    def _attacker_country(self, key: str, top: str, parent_pop: int, geography: float) -> float:
        """Chance that an attacker on this kind of network shows up in this country.

        Clouds and VPNs abroad are rented by customers and criminals alike, from the same few
        popular regions: so abroad, which country an exit is in says nothing about who rents it,
        and the attacker's share of a foreign country follows the customers' own foreign exits
        of that kind. Only home against abroad is evidence. (For home ISPs abroad — travellers'
        hotel lines — the attackers' spread over many countries still stands.)
        """
        if top not in CLOUD_KINDS:
            return geography
        home = self._home_country()
        if key.rsplit("/", 1)[1] == home:
            return geography
        pop = self.population
        kind = top[2:]
        here = pop.counts.get(key, 0)
        # Accounts abroad on this kind: the population counts an account once under the kind
        # but once in each country it used, so one with exits both at home and abroad is in
        # both; at the least, this country's own accounts are abroad.
        foreign = max(parent_pop - pop.counts.get(f"c:{kind}/{home}", 0), here)
        spread = 1.0 / self.p.attacker_countries
        share = (here + COUNTRY_PRIOR * spread) / (foreign + COUNTRY_PRIOR)
        return (1.0 - self.p.attacker_home_share) * share

    def _first_cookie(self, cookie: str) -> float:
        """An account the engine knows nothing of yet: does its sign-in carry a device cookie?

        Attackers present none about as often as ``no_cookie`` says (a script, a fresh proxy
        browser); how often customers do on the first sign-in the engine sees of them is
        learned from the population (accounts, by the cookie of their first learned sign-in),
        starting from the policy's ``customer_no_cookie`` worth ``customer_network_weight``
        accounts. So a deployment's first days — when every account is unknown, including those
        opened years ago — still tell a cookieless script from a customer's browser, and a
        broker whose app sends no cookie learns that it is normal.

        A cookie the engine has never seen vouches for nobody (0, not a little for the
        customer): a phishing kit's browser is given one when it loads the login page, as the
        customer's was. Crediting it let every fresh-cookie thief into an unknown account
        more easily (wide sweeps, seeds 61 and 97: more value lost for fewer challenges).
        """
        if cookie != NO_COOKIE:
            return 0.0
        counts = self.population.counts
        none = counts.get(FIRST_NO_COOKIE, 0)
        seen = none + counts.get(FIRST_COOKIE, 0)
        w = self.p.customer_network_weight
        if seen + w <= 0:
            return 0.0
        share = (none + w * self.p.customer_no_cookie) / (seen + w)
        return _clip(math.log(max(self.no_cookie, 1e-9) / max(share, 1e-9)), self.p.level_cap)

    def password_fallback(
        self, acc: AccountState, f: LoginFeatures, factors: Iterable[str]
    ) -> Signal | None:
        """A password sign-in from the browser this account signs in with by passkey.

        A phishing proxy relays the password and any one-time code, and the victim's browser
        (its user agent) with them, but never the passkey: it is bound to the broker's origin.
        The victim reads the phishing mail where she uses the account, so the proxy shows the
        browser she signs in with by passkey — now with the password, the thief's only door.
        Such a sign-in is weighed like any other value of the account's profile: the attacker
        signs in with the password every time, the customer as often as this account has from
        the browsers it used its passkey in (sign-ins learned since its first by passkey),
        smoothed toward how many of this broker's passkey accounts ever did (accounts, each
        once; starting from ``customer_password_fallback`` worth ``customer_network_weight``
        accounts). A password sign-in from another browser says nothing here: a customer's
        second device without the passkey looks just like it (measured: on the wide draw of seed
        223, weighing every password sign-in of a passkey account challenged 56% more customers'
        sign-ins, nearly all from a new device).
        """
        if not acc.passkey or not acc.passkey_logins or "passkey" in factors:
            return None
        if f.device[3] not in acc.passkey_browsers:
            return None
        counts = self.population.counts
        passkey = counts.get(PASSKEY_ACCOUNTS, 0)
        fallback = min(counts.get(FALLBACK_ACCOUNTS, 0), passkey)
        w = self.p.customer_network_weight
        if passkey + w <= 0:
            return None
        share = (fallback + w * self.p.customer_password_fallback) / (passkey + w)
        pw = self.p.population_weight
        mine = acc.fallback_logins
        p_user = (mine + pw * share) / (acc.passkey_logins + mine + pw)
        llr = _clip(-math.log(max(p_user, 1e-9)), self.p.level_cap)
        return Signal(
            "password_fallback",
            llr,
            {"passkey": acc.passkey_logins, "password": mine},
        )

    def _cookie(self, acc: AccountState, cookie: str) -> float:
        if acc.n == 0:
            return self._first_cookie(cookie)
        count = acc.seen.get(cookie, 0)
        p_new = self._novelty(acc, "d", acc.n)
        if cookie == NO_COOKIE:
            p_att = self.no_cookie
            p_user = (count + p_new * 0.5) / (acc.n + 1.0)
        elif count > 0:
            p_att = COINCIDENCE
            p_user = (1.0 - p_new) * count / acc.n
        else:
            p_att = 1.0 - self.no_cookie
            p_user = p_new
        return _clip(math.log(max(p_att, 1e-9) / max(p_user, 1e-9)), self.p.level_cap)

    def _home_country(self) -> str:
        """The country most of this broker's accounts sign in from (learned, not assumed).

        Counted again each time the population doubles, then every 1,000 sign-ins: an engine
        that starts empty must not keep the country of its first few sign-ins (a traveller at
        midnight) as home for the next thousand, which made every home sign-in look foreign.
        """
        pop = self.population
        if pop.n and (not pop.home or pop.n >= min(2 * pop.home_at, pop.home_at + 1000)):
            totals: dict[str, int] = {}
            for key, count in pop.counts.items():
                if key.startswith("c:"):
                    country = key.rsplit("/", 1)[1]
                    totals[country] = totals.get(country, 0) + count
            pop.home = max(sorted(totals), key=totals.__getitem__)
            pop.home_at = pop.n
            self.state.put("population", "all", pop)
        return pop.home

    def _geography(self, country: str) -> float | None:
        """Chance that an attacker signs in from ``country``.

        About half of them from this broker's home country (proxies, Japanese clouds), the rest
        spread over many countries — while the customers mostly sign in from home. So a sign-in
        from abroad is evidence even for an account with little or no history.
        """
        home = self._home_country()
        if not home:
            return None
        share = self.p.attacker_home_share
        return share if country == home else (1.0 - share) / self.p.attacker_countries

    def _p_country(self, key: str, geography: float) -> float:
        """Share of accounts that signed in from a country, whatever the kind of network.

        Smoothed toward the attackers' geography, so that a small population says nothing.
        """
        pop = self.population
        country = key.rsplit("/", 1)[1]
        seen = sum(pop.counts.get(f"c:{kind}/{country}", 0) for kind in NETWORK_KINDS)
        return (seen + COUNTRY_PRIOR * geography) / (self._accounts(NETWORK_TOPS) + COUNTRY_PRIOR)

    @staticmethod
    def _copyable(llr: float, copy: float) -> float:
        """Mix in an attacker who copies the account holder's own value with chance ``copy``.

        A phishing proxy relays the victim's user agent, an infostealer lifts the device cookie:
        a familiar value can then vouch for the customer only as far as ``log(copy)``.
        """
        return math.log(copy + (1.0 - copy) * math.exp(min(llr, 30.0)))

    def _hour(self, acc: AccountState, hour: int) -> float:
        if acc.n == 0 or not acc.hours:
            return 0.0
        total = sum(acc.hours)
        pop = self.population

        def smooth(hours: list[int], total: int) -> float:
            near = hours[hour] + 0.5 * (hours[hour - 1] + hours[(hour + 1) % 24])
            return (near + 0.1) / (2.0 * total + 2.4)

        p_pop = smooth(pop.hours, pop.n) if pop.n else 1 / 24
        w = self.p.population_weight
        near = acc.hours[hour] + 0.5 * (acc.hours[hour - 1] + acc.hours[(hour + 1) % 24])
        p_user = (near + w * 2.0 * p_pop) / (2.0 * total + 2.0 * w)
        return _clip(math.log(p_pop / p_user), self.p.hour_cap)

    def familiarity(self, acc: AccountState, f: LoginFeatures) -> list[Signal]:
        """Signals comparing a sign-in with the account's history."""
        kind = f.net.kind
        net, net_new = self._hierarchy(
            acc, f.network, self.attacker_network.get(kind, 0.2), self._geography(f.net.country)
        )
        dev, dev_new = self._hierarchy(acc, f.device, None)
        net = self._copyable(net, self.reuse["i"])
        dev = self._copyable(dev, self.reuse["u"])
        cookie = self._copyable(self._cookie(acc, f.cookie), self.reuse["d"])
        return [
            Signal(
                "login_network",
                net,
                {
                    "ip": f.ip,
                    "country": f.net.country,
                    "asn": f.net.asn,
                    "network": kind,
                    "new": "".join(net_new),
                },
            ),
            Signal("login_device", dev, {"user_agent": f.ua_key, "new": "".join(dev_new)}),
            Signal("login_cookie", cookie, {"cookie": f.cookie[2:]}),
            Signal("login_hour", self._hour(acc, f.hour), {"hour": f.hour}),
        ]

    # --- infrastructure ---------------------------------------------------------------------
    def _entity(self, key: str) -> EntityState:
        found = self.state.get("entity", key)
        if found is None:
            found = EntityState()
            self.state.put("entity", key, found)
        return found

    @staticmethod
    def entity_keys(f: LoginFeatures) -> tuple[str, ...]:
        """The shared infrastructure a sign-in can be linked by.

        An address always; an AS only when it is a hosting or anonymizer network (a big ISP
        carries unfamiliar sign-ins of honest customers every minute); a user agent only
        together with such an AS, since popular browsers are shared by millions.
        """
        if f.net.kind in ("hosting", "anonymizer"):
            return (f"ip:{f.ip}", f"asn:{f.net.asn}", f"ua:{f.net.asn}/{f.ua_key}")
        return (f"ip:{f.ip}",)

    def infrastructure(
        self, account: str, acc: AccountState, f: LoginFeatures, now: float
    ) -> list[Signal]:
        p = self.p
        span = p.infrastructure_window_hours * 3600
        keys = self.entity_keys(f)
        ip_key = keys[0]
        signals: list[Signal] = []
        others = 0.0
        evidence: dict[str, int] = {}
        for key in keys:
            weight, window_name = (1.0, "unfamiliar") if key is ip_key else (0.5, "risky")
            ent = self.state.get("entity", key)
            if ent is None:
                continue
            window = getattr(ent, window_name)
            if window:
                prune_window(window, now, span, 64)
            n = window_count(window, now, span, skip=account)  # a late one: those before it
            if n > 0:
                evidence[key] = n
                others += weight * n
        if others:
            llr = min(p.infrastructure_cap, p.infrastructure_per_account * others)
            signals.append(Signal("shared_infrastructure", llr, evidence))
        failures = self._recent_failures(acc, now)
        ip_ent = self.state.get("entity", ip_key)
        ip_failures = 0
        if ip_ent is not None and ip_ent.failures:
            span = p.failure_window_minutes * 60
            prune_window(ip_ent.failures, now, span, 64)
            # each failure its own member, at its own time: a late sign-in counts those before it
            ip_failures = window_count(ip_ent.failures, now, span)
        if failures or ip_failures > 2:
            llr = p.failure_llr * (failures + 0.25 * max(0, ip_failures - 2))
            signals.append(
                Signal("failure_velocity", llr, {"account": failures, "address": ip_failures})
            )
        since = now - p.step_up_failure_hours * 3600
        recent = [t for t in acc.challenge_failures if since < t <= now]  # a late one: before it
        if recent:
            # Somebody who could not confirm by passkey or to the registered contact tried this
            # account lately: the credentials are probably in the wrong hands.
            signals.append(
                Signal(
                    "failed_step_up", p.step_up_failure_llr * len(recent), {"count": len(recent)}
                )
            )
        canary = self._canary(keys, now)
        if canary is not None:
            signals.append(canary)
        # Only against an earlier sign-in: a late one (delivered after later ones) is older
        # than ``last_login``, whose country need not be where the customer was before it.
        if (
            acc.last_country
            and acc.last_country != f.net.country
            and f.net.kind == "isp"
            and 0 <= now - acc.last_login < p.travel_hours * 3600
        ):
            signals.append(
                Signal(
                    "impossible_travel",
                    p.travel_llr,
                    {
                        "from": acc.last_country,
                        "to": f.net.country,
                        "minutes": round((now - acc.last_login) / 60),
                    },
                )
            )
        return signals

    def _canary(self, keys: tuple[str, ...], now: float) -> Signal | None:
        """A sign-in from where a clone of the login page was rendered in the last hours.

        A phishing reverse proxy relays the broker's page, canary included, and the canary's
        report arrives from the proxy's address; the victim's credentials then arrive from the
        same address (or the same hosting network) moments later.
        """
        span = self.p.canary_hours * 3600
        for key in keys[:2]:  # the address, and a hosting/anonymizer AS
            ent = self.state.get("entity", key)
            # a late sign-in from before the hits does not see them (one between two does)
            if ent is not None and seen_at(ent.canary, now, span):
                evidence = {"key": key, "origin": ent.canary_origin}
                evidence["minutes"] = round((now - min(run_last(ent.canary), now)) / 60)
                return Signal("canary_proxy", self.p.canary_llr, evidence)
        return None

    def note_canary(self, ip: str, net: NetworkInfo, origin: str, now: float) -> None:
        """Remember a canary hit on its address (and AS, when that is hosting or anonymizer).

        The first and last hit (a run) and the last hit's origin per address record, swept with
        the other per-address records once the window has passed: the state stays bounded by
        the addresses seen in a day. A late hit moves the first back and keeps the origin.
        """
        keys = [f"ip:{ip}"]
        if net.kind in ("hosting", "anonymizer"):
            keys.append(f"asn:{net.asn}")
        for key in keys:
            ent = self._entity(key)
            note_canary_hit(ent, origin[:256], now)
            self.state.put("entity", key, ent)
        if self.on_entity is not None:
            self.on_entity("canary", keys=tuple(keys), origin=origin[:256], at=now)

    def _recent_failures(self, acc: AccountState, now: float) -> int:
        """The account's failed credential checks in the window that ends at ``now``.

        ``acc.failures`` is kept in time order (see :meth:`note_failure`), so the first tells
        whether any expired; a late event counts none of those after its own time.
        """
        horizon = now - self.p.failure_window_minutes * 60
        if acc.failures and acc.failures[0] < horizon:
            acc.failures = tuple(t for t in acc.failures if t >= horizon)
        return bisect_right(acc.failures, now)

    # --- what a sign-in leaves behind -----------------------------------------------------
    def note_failure(self, account: str, acc: AccountState, ip: str, event_id: str, now: float):
        """A failed credential check; returns the account's failures in the window.

        A late one (delivered after later ones) takes its place in time: appended, it hid the
        expired failures behind it from :meth:`_recent_failures` and counted the later ones."""
        failures = acc.failures
        at = bisect_right(failures, now)
        acc.failures = (*failures[:at], now, *failures[at:])[-20:]  # the latest 20
        key = f"ip:{ip}"
        ent = self._entity(key)
        touch_window(ent.failures, event_id, now, self.p.failure_window_minutes * 60, 64)
        self.state.put("entity", key, ent)
        if self.on_entity is not None:
            self.on_entity("failure", keys=(key,), account=event_id, at=now)
        return self._recent_failures(acc, now)

    def note_unfamiliar(
        self, account: str, f: LoginFeatures, familiarity: float, now: float
    ) -> None:
        """Remember a sign-in unfamiliar to its account on its address, AS and user agent."""
        if familiarity <= self.p.unfamiliar_llr:
            return  # familiar sign-ins leave nothing behind: the state stays small
        span = self.p.infrastructure_window_hours * 3600
        for key in self.entity_keys(f):
            ent = self._entity(key)
            ent.logins += 1
            ent.unfamiliar_total += 1
            touch_window(ent.unfamiliar, account, now, span, 64)
            self.state.put("entity", key, ent)
        if self.on_entity is not None:
            self.on_entity("unfamiliar", keys=self.entity_keys(f), account=account, at=now)

    def note_risky(
        self, account: str, f: LoginFeatures, now: float
    ) -> list[tuple[str, EntityState]]:
        """Remember a sign-in that failed a strong step-up, or went through with high risk.

        Returns the entities it was noted on, for the campaign detector.
        """
        span = self.p.infrastructure_window_hours * 3600
        touched: list[tuple[str, EntityState]] = []
        for key in self.entity_keys(f):
            ent = self._entity(key)
            touch_window(ent.risky, account, now, span, 64)
            self.state.put("entity", key, ent)
            touched.append((key, ent))
        return touched

    def clear(self, account: str, f: LoginFeatures) -> None:
        """The account holder proved it was them: their sign-in no longer counts against anyone."""
        for key in self.entity_keys(f):
            ent = self.state.get("entity", key)
            if ent is not None:
                ent.unfamiliar.pop(account, None)
                ent.risky.pop(account, None)
                self.state.put("entity", key, ent)

    def learn(self, acc: AccountState, f: LoginFeatures, now: float, passkey: bool = False) -> bool:
        """Add a trusted sign-in to the account's profile and to the population; ``passkey``
        when it was made with the passkey. Returns whether it was a password sign-in into an
        account that had signed in with its passkey (counted for :meth:`password_fallback`).

        The population counts accounts, not sign-ins: a value is counted the first time an
        account shows it. Its shares are where *customers* sign in from, the base measure for a
        customer the engine does not know yet; counted per sign-in, the few accounts that sign
        in all day — a trader on a rented server, or a criminal ring's own accounts at the same
        broker, dozens of sign-ins a day each from clouds — made clouds look common for everyone.
        (The hours stay counted per sign-in: they are the population's clock.)
        """
        seen = acc.seen
        pop = self.population
        counts = pop.counts
        counted: list[str] = []
        if acc.n == 0:
            first = FIRST_NO_COOKIE if f.cookie == NO_COOKIE else FIRST_COOKIE
            counts[first] = counts.get(first, 0) + 1
            counted.append(first)
        for key in profile_keys(f):
            if key in seen:
                seen[key] += 1
                continue
            level = key[0]
            if not acc.distinct:
                acc.distinct = [0] * len(LEVELS)
            acc.distinct[LEVELS.index(level)] += 1
            if level in FINE_LEVELS:
                self._make_room(seen, level)
            else:
                counts[key] = counts.get(key, 0) + 1
                counted.append(key)
            seen[key] = 1
        fallback = False
        browser = f.device[3]
        if passkey:
            if not acc.passkey_logins:
                counts[PASSKEY_ACCOUNTS] = counts.get(PASSKEY_ACCOUNTS, 0) + 1
                counted.append(PASSKEY_ACCOUNTS)
            acc.passkey_logins += 1
            kept = tuple(b for b in acc.passkey_browsers if b != browser)
            acc.passkey_browsers = (*kept, browser)[-PASSKEY_BROWSERS_KEPT:]
        elif acc.passkey_logins and browser in acc.passkey_browsers:
            if not acc.fallback_logins:
                counts[FALLBACK_ACCOUNTS] = counts.get(FALLBACK_ACCOUNTS, 0) + 1
                counted.append(FALLBACK_ACCOUNTS)
            acc.fallback_logins += 1
            fallback = True
        if self.on_learn is not None:
            self.on_learn(tuple(counted), f.hour)
        acc.n += 1
        if not acc.hours:
            acc.hours = bytearray(24)
        elif acc.hours[f.hour] == 255:
            acc.hours = bytearray(v // 2 for v in acc.hours)  # keeps the shape, forgets the scale
        acc.hours[f.hour] += 1
        pop.n += 1
        pop.hours[f.hour] += 1
        if now >= acc.last_login:  # a late sign-in (or an analyst's, days on) is not the last
            acc.last_login = now
            acc.last_country = f.net.country
        self.state.put("population", "all", pop)
        return fallback

    @staticmethod
    def unlearn(acc: AccountState, keys: tuple[str, ...], hour: int) -> None:
        """Take a sign-in back out of the account's profile: it turned out not to be the
        customer's (its session failed a strong step-up). The population keeps it: among a
        broker's accounts one is noise, and while they are few the policy's belief about where
        customers sign in from outweighs it (:meth:`_p_pop_top`); a scale-out stage has already
        shared it. (Should the customer later show a value taken out, the population counts the
        account for it again: rare, and one count.)"""
        for key in keys:
            if key == FALLBACK:
                acc.fallback_logins = max(0, acc.fallback_logins - 1)
                continue
            count = acc.seen.get(key)
            if count is None:
                continue  # made room for since
            if count > 1:
                acc.seen[key] = count - 1
                continue
            del acc.seen[key]
            if acc.distinct:
                level = LEVELS.index(key[0])
                acc.distinct[level] = max(0, acc.distinct[level] - 1)
        acc.n = max(0, acc.n - 1)
        if acc.hours and 0 <= hour < 24 and acc.hours[hour]:
            acc.hours[hour] -= 1

    @staticmethod
    def _make_room(seen: dict[str, int], level: str) -> None:
        values = [k for k in seen if k[0] == level]
        if len(values) >= MAX_FINE_VALUES:
            del seen[min(values, key=seen.__getitem__)]


REFERRER_CACHE = 4096  # distinct referrers remembered; a login page has few, a phishing wave more


class ReferrerCheck:
    """Is the page a sign-in came from (its HTTP Referer) a phishing site?

    A victim who typed the password into a fake site is often sent on to the real login page
    afterwards, and an adversary-in-the-middle proxy relays the browser's headers: either way the
    broker's login system logs the phishing page as the referrer. The referrer is unwrapped
    (translation proxies, redirectors) with the phishing package; a hop on the block-list is
    strong evidence, a URL the scorer calls phishing for a registered brand somewhat less (the
    scorer errs, the list was confirmed). The firms' own and group domains never count.

    Pure: the block-list is loaded by the guard and handed in; results are cached per referrer.
    """

    def __init__(self, params: LoginParams, blocklist: Blocklist | None = None) -> None:
        self.p = params
        self.blocklist = blocklist
        self._cache: dict[str, Signal | None] = {}

    def set_blocklist(self, blocklist: Blocklist | None) -> None:
        """Swap in a new list (a running guard picks up today's export)."""
        self.blocklist = blocklist
        self._cache = {}

    def signal(self, referrer: str | None) -> Signal | None:
        """The ``phishing_referrer`` signal for this referrer, or None."""
        if not referrer:
            return None
        if referrer in self._cache:
            return self._cache[referrer]
        found = self._judge(referrer)
        if len(self._cache) >= REFERRER_CACHE:
            self._cache.pop(next(iter(self._cache)))
        self._cache[referrer] = found
        return found

    def _judge(self, referrer: str) -> Signal | None:
        from brokerguard.phishing import URLError, default_registry, score_url, unwrap

        try:
            hops = unwrap(referrer)
        except URLError:
            return None
        official = default_registry().official
        if self.blocklist is not None and len(self.blocklist):
            for hop in hops:
                if hop.url.registrable in official:
                    continue
                entry = self.blocklist.match(hop.url.host)
                if entry is not None:
                    return Signal(
                        "phishing_referrer",
                        self.p.referrer_blocked_llr,
                        {"host": hop.url.host, "listed": True, "brand": entry.brand},
                    )
        finding = score_url(referrer)
        if finding.is_phishing and finding.brand is not None:
            return Signal(
                "phishing_referrer",
                self.p.referrer_phishing_llr,
                {"host": finding.host, "listed": False, "brand": finding.brand},
            )
        return None
