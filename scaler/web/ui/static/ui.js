// runner-scaler UI: mark the page stale while the scaler does not answer the
// live refresh (htmx keeps polling; the next good answer clears it).
(function () {
  "use strict";
  function stale(on) { document.body.classList.toggle("offline", on); }
  document.addEventListener("htmx:sendError", function () { stale(true); });
  document.addEventListener("htmx:responseError", function () { stale(true); });
  document.addEventListener("htmx:afterSwap", function () { stale(false); });
})();
