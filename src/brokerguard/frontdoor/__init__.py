"""The reference broker front door (``brokerguard demo-site``) and the investor's pages.

A small broker site — log-in with password or passkey, portfolio, order form, security
settings — that uses BrokerGuard the way a broker would: every decision point goes to the
service's public HTTP API (:mod:`.guardclient`), and the customer-side pieces come from
:mod:`brokerguard.auth` (passkeys, lockout, step-up) and :mod:`brokerguard.notify`.

Modules, one job each: :mod:`.site` wires the parts; :mod:`.flows` carries out the guard's
answers; :mod:`.pages_access` (log-in, unlock), :mod:`.pages_account` (portfolio, orders,
step-up), :mod:`.pages_security` (the security page) and :mod:`.canary` (the clone canary) are
the HTTP handlers; :mod:`.sessions`, :mod:`.prefs` and :mod:`.book` keep the site's records;
:mod:`.texts` has every customer text in Japanese and English; :mod:`.embedded` runs a guard in
the same process when none is given.

Nothing is imported here, so that ``brokerguard --help`` does not load the web stack.
"""
