/* Page behaviour for every CanaryHub page. The Content-Security-Policy allows no inline script,
   no inline event handlers (onclick=, hx-on) and no style= attributes, so templates declare
   behaviour with data- attributes and this file attaches it by event delegation:
     data-dialog-slot        an htmx target: a <dialog> swapped into it opens as a modal
     data-dialog-close       a button that closes the <dialog> around it
     data-submit-on-change   a form control whose change submits its form
     data-meter="42.5"       a meter fill whose width is that percentage (set through the CSSOM) */
(function () {
  "use strict";

  function setMeters(root) {
    var scope = root && root.querySelectorAll ? root : document;
    var fills = Array.prototype.slice.call(scope.querySelectorAll("[data-meter]"));
    if (scope.matches && scope.matches("[data-meter]")) { fills.push(scope); }
    fills.forEach(function (fill) {
      var percent = Math.max(0, Math.min(100, parseFloat(fill.dataset.meter) || 0));
      fill.style.width = percent + "%";
    });
  }

  document.addEventListener("click", function (event) {
    var closer = event.target.closest && event.target.closest("[data-dialog-close]");
    if (!closer) { return; }
    var dialog = closer.closest("dialog");
    if (dialog) { dialog.close(); }
  });

  document.addEventListener("change", function (event) {
    var control = event.target;
    if (control.matches && control.matches("[data-submit-on-change]") && control.form) {
      control.form.submit();
    }
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var slot = event.detail && event.detail.target;
    if (!slot || !slot.matches || !slot.matches("[data-dialog-slot]")) { return; }
    var dialog = slot.querySelector("dialog:not([open])");
    if (dialog) { dialog.showModal(); }
  });

  // htmx:load fires for the page and for every piece of content htmx swaps in.
  document.addEventListener("htmx:load", function (event) { setMeters(event.target); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { setMeters(document); });
  } else {
    setMeters(document);
  }
})();
