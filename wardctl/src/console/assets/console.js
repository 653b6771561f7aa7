// wardctl console: live progress over Server-Sent Events and the automatic logoff on the
// screen. Everything else works without script.
(function () {
  "use strict";
  // Live regions: <div data-live="/commands/ID/events">…</div>. Each event carries the
  // region's new HTML, rendered (and escaped) by the console; "done" closes the stream.
  document.querySelectorAll("[data-live]").forEach(function (region) {
    var source = new EventSource(region.getAttribute("data-live"));
    source.onmessage = function (e) { region.innerHTML = e.data; };
    source.addEventListener("done", function (e) {
      region.innerHTML = e.data;
      source.close();
    });
    source.addEventListener("ended", function () {
      source.close();
      window.location.assign("/logged-out");
    });
  });
  // Automatic logoff: after the idle limit without a request the session is over on the
  // server; take the page (and what it shows) off the screen too.
  var idle = Number(document.body.getAttribute("data-idle-ms") || 0);
  if (idle > 0) {
    window.setTimeout(function () { window.location.assign("/logged-out"); }, idle + 500);
  }
  // A destructive action's button stays disabled until the host name is typed exactly.
  document.querySelectorAll("input[data-confirm]").forEach(function (input) {
    var button = input.form && input.form.querySelector("button[type=submit]");
    if (!button) { return; }
    var expect = input.getAttribute("data-confirm").toLowerCase();
    var update = function () { button.disabled = input.value.trim().toLowerCase() !== expect; };
    input.addEventListener("input", update);
    update();
  });
})();
