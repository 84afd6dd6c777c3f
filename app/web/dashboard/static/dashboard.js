// Live refresh without reloading: every few seconds the page asks itself for its `live` block
// (X-Live: 1) and swaps it in, keeping keyboard focus where it was. Actions that destroy data
// ask for confirmation first. Without JavaScript the pages work as they are, minus both.
(function () {
  "use strict";
  var EVERY_MS = 3000;

  function focusedId(region) {
    var el = document.activeElement;
    return el && el.id && region.contains(el) ? el.id : null;
  }

  function refresh(region) {
    if (document.hidden) return schedule(region);
    fetch(location.href, { headers: { "X-Live": "1" }, credentials: "same-origin", redirect: "manual" })
      .then(function (r) {
        if (r.status !== 200 || r.type === "opaqueredirect") throw new Error("stopped");
        return r.text();
      })
      .then(function (html) {
        var keep = focusedId(region);
        region.innerHTML = html;
        if (keep && document.getElementById(keep)) document.getElementById(keep).focus();
        region.dataset.refreshedAt = String(Date.now());
        schedule(region);
      })
      .catch(function () { region.dataset.refreshStopped = "1"; });
  }

  function schedule(region) {
    setTimeout(function () { refresh(region); }, EVERY_MS);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  document.addEventListener("DOMContentLoaded", function () {
    var region = document.querySelector("[data-live]");
    if (region) schedule(region);
  });
})();
