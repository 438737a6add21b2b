// Keeps the page current without a reload: relative times every second,
// the rows every ten seconds (not while someone is typing in the form).
(function () {
  "use strict";
  function ago(ms) {
    var s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }
  function tick() {
    var times = document.querySelectorAll("time[data-ms]");
    for (var i = 0; i < times.length; i++) {
      times[i].textContent = ago(Number(times[i].getAttribute("data-ms")));
    }
  }
  function refresh() {
    var main = document.getElementById("main");
    var active = document.activeElement;
    if (!main || (active && (active.tagName === "INPUT" || active.tagName === "SELECT"))) return;
    fetch(window.location.href, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html");
        var fresh = next.getElementById("main");
        if (fresh) {
          main.innerHTML = fresh.innerHTML;
          document.title = next.title;
          tick();
        }
      })
      .catch(function () { /* the next refresh tries again */ });
  }
  tick();
  setInterval(tick, 1000);
  setInterval(refresh, 10000);
})();
