// The office page, live: when the server says the board changed (server-sent events), fetch
// the board part again and swap it in. Without this script the page refreshes every 30 s.
// The words shown come from the page's template (data-live, data-lost), not from here.
(function () {
  "use strict";
  var main = document.getElementById("board");
  var live = document.getElementById("live");
  if (!main || !live || !window.EventSource) { return; }
  var said = { live: live.getAttribute("data-live") || "", lost: live.getAttribute("data-lost") || "" };
  var asked = [];
  ["filter", "county"].forEach(function (k) {
    var v = main.getAttribute("data-" + k) || "";
    if (v) { asked.push(k + "=" + encodeURIComponent(v)); }
  });
  var url = "/office/board" + (asked.length ? "?" + asked.join("&") : "");
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); })
      .then(function (html) { main.innerHTML = html; live.textContent = said.live; })
      .catch(function () { live.textContent = said.lost; })
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  var es = new EventSource("/office/events");
  // The first event comes as the stream opens: fetching then too closes the gap between the
  // page being rendered and the stream being opened.
  es.addEventListener("board", refresh);
  es.onerror = function () { live.textContent = said.lost; };
})();
