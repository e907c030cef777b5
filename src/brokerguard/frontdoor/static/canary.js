// The log-in page's clone canary (see brokerguard/frontdoor/canary.py). The broker's origin is
// written split and reversed so that a proxy rewriting the broker's host name in relayed pages
// leaves it alone; the origin reported is base64 for the same reason.
(function () {
  "use strict";
  var me = document.getElementById("canary");
  if (!me) return;
  function rev(s) { return (s || "").split("").reverse().join(""); }
  var own = rev(me.getAttribute("data-a")) + rev(me.getAttribute("data-b"));
  var here = window.location.origin;
  var ref = document.referrer || "";
  var framed = false;
  try { framed = window.top !== window.self && window.top.location.origin !== own; } catch (e) { framed = true; }
  if (here === own && !framed) return;
  var body = JSON.stringify({ o: btoa(here === own ? "null" : here), r: btoa(ref.slice(0, 200)) });
  function send(url) {
    try {
      if (navigator.sendBeacon) { navigator.sendBeacon(url, new Blob([body], { type: "text/plain" })); return; }
    } catch (e) { /* fall through */ }
    try { fetch(url, { method: "POST", mode: "no-cors", body: body, keepalive: true }); } catch (e) { /* nothing */ }
  }
  send("/canary");          // through a relaying proxy: arrives from the proxy's address
  send(own + "/canary");    // from a copied page: reaches the broker directly
})();
