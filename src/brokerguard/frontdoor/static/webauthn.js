// WebAuthn glue for the reference site: turns the server's JSON options into what
// navigator.credentials wants (ArrayBuffers) and the browser's credential back into JSON for
// py_webauthn. Served by the site itself; no library from the internet.
(function () {
  "use strict";
  function toBuf(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out.buffer;
  }
  function toB64u(buf) {
    var bytes = new Uint8Array(buf), bin = "";
    for (var i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function creationOptions(o) {
    o.challenge = toBuf(o.challenge);
    o.user.id = toBuf(o.user.id);
    (o.excludeCredentials || []).forEach(function (c) { c.id = toBuf(c.id); });
    return o;
  }
  function requestOptions(o) {
    o.challenge = toBuf(o.challenge);
    (o.allowCredentials || []).forEach(function (c) { c.id = toBuf(c.id); });
    return o;
  }
  function credentialJSON(c) {
    var r = c.response, response = { clientDataJSON: toB64u(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64u(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toB64u(r.authenticatorData);
      response.signature = toB64u(r.signature);
      if (r.userHandle) response.userHandle = toB64u(r.userHandle);
    }
    return {
      id: c.id, rawId: toB64u(c.rawId), type: c.type, response: response,
      clientExtensionResults: c.getClientExtensionResults ? c.getClientExtensionResults() : {},
      authenticatorAttachment: c.authenticatorAttachment || undefined
    };
  }
  function csrf() {
    var main = document.querySelector("main");
    return main ? main.getAttribute("data-csrf") || "" : "";
  }
  function post(url, body) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf() },
      body: JSON.stringify(body || {})
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j.error || ("HTTP " + r.status));
        return j;
      });
    });
  }
  function failed(err) {
    var box = document.getElementById("passkey-error");
    if (box) { box.classList.remove("hidden"); box.setAttribute("data-reason", String(err)); }
  }
  function go(answer) { if (answer && answer.redirect) window.location.assign(answer.redirect); }

  function signIn(button, wrap) {
    post(button.getAttribute("data-options"), {}).then(function (options) {
      return navigator.credentials.get({ publicKey: requestOptions(options) });
    }).then(function (cred) {
      var json = credentialJSON(cred);
      return post(button.getAttribute("data-answer"), wrap ? { response: json } : json);
    }).then(go).catch(failed);
  }
  function bind(id, fn) {
    var el = document.getElementById(id);
    if (el) el.addEventListener("click", function () { fn(el); });
  }
  bind("passkey-login", function (b) { signIn(b, false); });
  bind("reauth", function (b) { signIn(b, false); });
  bind("stepup-passkey", function (b) { signIn(b, true); });
  // A blank name is refused in the form, next to its field (which keeps what was typed),
  // before the browser asks for a fingerprint or PIN; the server refuses it too.
  function nameRefused(input, refused) {
    var said = document.getElementById("passkey-name-error");
    if (said) said.classList.toggle("hidden", !refused);
    if (refused) { input.setAttribute("aria-invalid", "true"); input.focus(); }
    else input.removeAttribute("aria-invalid");
    return refused;
  }
  bind("create-passkey", function () {
    var input = document.getElementById("passkey-name");
    if (nameRefused(input, !input.value.trim())) return;
    post("/settings/passkeys/options", {}).then(function (options) {
      return navigator.credentials.create({ publicKey: creationOptions(options) });
    }).then(function (cred) {
      return post("/settings/passkeys", { name: input.value, response: credentialJSON(cred) });
    }).then(go).catch(function (err) {
      if (String(err).indexOf("name_invalid") >= 0) nameRefused(input, true);
      else failed(err);
    });
  });
  bind("unlock-passkey", function () {
    // The account typed in the form; the server finds its open unlock request itself.
    var account = document.getElementById("unlock-account").value;
    post("/unlock/options", { account: account }).then(function (begun) {
      return navigator.credentials.get({ publicKey: requestOptions(begun.options) });
    }).then(function (cred) {
      return post("/unlock/verify", { account: account, response: credentialJSON(cred) });
    }).then(go).catch(failed);
  });
})();
