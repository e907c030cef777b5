"""Session: is the session still in the hands of the person who signed in?

A session cookie stolen by infostealer malware or relayed by a phishing proxy is replayed from the
criminals' own network and browser. So every request is compared with the session's origin: a new
address inside the same AS is normal (mobile carriers), a new AS, country, kind of network, user
agent or device cookie mid-life is not — unless the account is known to use that network. A session
whose sign-in was never seen (a remember-me cookie) is judged on its first request like a sign-in.
Bursts of sensitive actions (settings, withdrawals) add to the risk.
"""

from __future__ import annotations

from bisect import bisect_right, insort

from brokerguard.engine.detectors.login import LoginFeatures
from brokerguard.engine.policy import SessionParams
from brokerguard.engine.signals import Signal
from brokerguard.engine.state import SessionState

__all__ = ["SessionWatch"]


class SessionWatch:
    def __init__(self, params: SessionParams) -> None:
        self.p = params

    def start(
        self,
        account: str,
        session_id: str,
        f: LoginFeatures,
        llr: float,
        now: float,
        login_seen: bool,
    ) -> SessionState:
        return SessionState(
            account=account,
            started=now,
            last=now,
            ip=f.ip,
            asn=f.net.asn,
            country=f.net.country,
            net_kind=f.net.kind,
            ua=f.ua_key,
            cookie=f.cookie,
            login_seen=login_seen,
            llr=llr,
        )

    def request(
        self, sess: SessionState, f: LoginFeatures, network_llr: float, now: float
    ) -> Signal | None:
        """A request from ``f``; returns a hijack signal when the origin changed.

        A late request (older than the session's last) is judged against the session's origin
        but does not replace it, nor move the session's last request back: the customer's
        earlier Wi-Fi, delivered after her switch to mobile, would make her next mobile request
        a change again, and an idle sweep could end a session in use."""
        late = now < sess.last
        sess.last = max(sess.last, now)
        if (
            f.ip == sess.ip
            and f.ua_key == sess.ua
            and (f.cookie == sess.cookie or f.cookie == "d:-")
        ):
            return None
        p = self.p
        llr = 0.0
        what: list[str] = []
        if f.net.country != sess.country or f.net.kind != sess.net_kind:
            llr += p.network_change_llr
            what.append("network")
        elif f.net.asn != sess.asn:
            llr += p.as_change_llr
            what.append("as")
        if f.ua_key != sess.ua or (f.cookie != sess.cookie and f.cookie != "d:-"):
            llr += p.device_change_llr
            what.append("device")
        # A change to a network this account is known to use is much less telling; to one it
        # never used, more. (The device cannot vouch: a stolen cookie carries its browser.)
        if "network" in what or "as" in what:
            llr += network_llr
        if llr < self.p.hijack_min_llr:
            llr = 0.0  # e.g. home Wi-Fi to the customer's own carrier: people move
        if not late:
            sess.ip, sess.asn, sess.country = f.ip, f.net.asn, f.net.country
            sess.net_kind, sess.ua, sess.cookie = f.net.kind, f.ua_key, f.cookie
        if llr <= 0:
            return None
        sess.hijack = max(sess.hijack, llr)
        sess.trusted = False
        return Signal("session_hijack", llr, {"changed": ",".join(what), "ip": f.ip})

    def risk(self, sess: SessionState | None) -> list[Signal]:
        """The signals every decision inside a session starts from."""
        if sess is None:
            # An operation in a session the guard never saw start: no evidence either way.
            return [Signal("session_risk", 0.0, {"session": "unknown"})]
        if sess.trusted:
            llr = self.p.trusted_llr
        elif sess.hijack > 0:
            llr = max(0.0, sess.llr)  # whatever the sign-in earned does not carry over
        else:
            llr = sess.llr
        signals = [
            Signal("session_risk", llr, {"trusted": sess.trusted, "login_seen": sess.login_seen})
        ]
        if sess.hijack > 0:
            signals.append(Signal("session_hijack", sess.hijack, {"ip": sess.ip}))
        return signals

    def sensitive(self, sess: SessionState | None, now: float) -> Signal | None:
        """Note a sensitive action; a burst of them is a signal."""
        if sess is None:
            return None
        horizon = now - self.p.sensitive_window_minutes * 60
        sess.sensitive = [t for t in sess.sensitive if t >= horizon][-15:]
        insort(sess.sensitive, now)  # in time order: a late action takes its place ...
        n = bisect_right(sess.sensitive, now)  # ... and counts only the actions before it
        if n >= self.p.sensitive_burst:
            return Signal(
                "sensitive_burst",
                self.p.sensitive_llr * (n - self.p.sensitive_burst + 1),
                {"actions": n},
            )
        return None
