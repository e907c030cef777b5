"""Shared platforms that phishers rent instead of registering a domain: free hosting, dynamic
DNS, serverless edges, shorteners, mail click-trackers.

On these a host's registrable domain says nothing about who runs the page (``workers.dev`` is
Cloudflare's, the tenant is ``x.workers.dev``), so the scorer judges the tenant's labels and
treats the platform itself as mild evidence. The lists name public services by their documented
domains; they are not derived from any phishing list.
"""

from __future__ import annotations

from brokerguard.phishing._words import words

__all__ = ["DYNAMIC_DNS", "FREE_HOSTING", "SHORTENERS", "TRACKERS", "platform_kind"]


FREE_HOSTING = frozenset(
    words("""
    workers.dev pages.dev r2.dev netlify.app vercel.app web.app firebaseapp.com github.io
    gitlab.io glitch.me herokuapp.com onrender.com repl.co replit.app ngrok.io ngrok-free.app
    ngrok.app trycloudflare.com plesk.page wixsite.com weebly.com blogspot.com 000webhostapp.com
    azurewebsites.net amplifyapp.com ipfs.io dweb.link fleek.co square.site webflow.io framer.app
    framer.website godaddysites.com mystrikingly.com strikingly.com jimdofree.com jimdosite.com
    wordpress.com edgeone.app surge.sh fly.dev deno.dev cprapid.com translate.goog
    appspot.com cloudfront.net s3.amazonaws.com amazonaws.com storage.googleapis.com
    firebasestorage.googleapis.com on-fleek.app carrd.co notion.site yolasite.com webcindario.com
    """)
)

DYNAMIC_DNS = frozenset(
    words("""
    duckdns.org ddns.net hopto.org zapto.org serveftp.com sytes.net myftp.org myftp.biz
    no-ip.org no-ip.biz no-ip.info no-ip.co.uk noip.me servehttp.com serveblog.net
    dynu.net dynu.com freedns.afraid.org mooo.com chickenkiller.com ddnsfree.com ddnsking.com
    dnsalias.com dnsalias.net dyndns.org dynv6.net nsupdate.info myddns.me ddns.me
    changeip.com yourtrap.com serveuser.com b0tnet.com onmypc.org proxydns.com dumb1.com
    isasecret.com onmypc.info otzo.com xxuz.com 2waky.com lflink.com fartit.com mypop3.net
    sexidude.com 4pu.com sendsmtp.com mysecondarydns.com myddns.com mymom.info ssmailer.com
    ikwb.com misecure.com mrface.com https443.net 4dq.com zzux.com almostmy.com zyns.com
    itemdb.com instanthq.com qpoe.com dns04.com dns05.com ddns.info dynssl.com mynumber.org
    """)
)

SHORTENERS = frozenset(
    words("""
    bit.ly t.co tinyurl.com cutt.ly is.gd t.ly rb.gy clck.ru t.cn reurl.cc u.to s.id goo.su
    qrco.de n9.cl surl.li pse.is ow.ly buff.ly lnkd.in x.gd shorturl.at urlz.fr v.gd
    bitly.com tiny.cc rebrand.ly goo.gl amzn.to lin.ee ux.nu 00m.in shorter.me
    """)
)

TRACKERS = frozenset(
    words("""
    sendgrid.net list-manage.com mailchimp.com mcsv.net mandrillapp.com mailgun.org
    sparkpostmail.com exacttarget.com cmail19.com cmail20.com createsend1.com hubspotlinks.com
    """)
)


def platform_kind(registrable: str) -> str | None:
    """``free_hosting``, ``dynamic_dns``, ``shortener``, ``tracker`` or None."""
    if registrable in FREE_HOSTING:
        return "free_hosting"
    if registrable in DYNAMIC_DNS:
        return "dynamic_dns"
    if registrable in SHORTENERS:
        return "shortener"
    if registrable in TRACKERS:
        return "tracker"
    return None
