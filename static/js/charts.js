/* The canary page's charts. Figures come from the server as JSON (<script type="application/json">
   elements); this file only draws them with Plotly and, while the canary is live, redraws them in
   place (Plotly.react) with the JSON that htmx fetches every evaluation cadence. Without
   JavaScript the tables beside each chart are the view. */
(function () {
  "use strict";

  var config = { responsive: true, displaylogo: false };

  function figureOf(plot) {
    var source = document.getElementById(plot.dataset.figure);
    return source ? JSON.parse(source.textContent) : null;
  }

  function drawAll() {
    if (typeof Plotly === "undefined") { return; }
    document.querySelectorAll("[data-chart]").forEach(function (plot) {
      var figure = figureOf(plot);
      if (!figure) { return; }
      Plotly.newPlot(plot, figure.data, figure.layout, config).then(function () {
        plot.dataset.drawn = "true";
        // The chart is on screen: its table stays one click away (and for screen readers).
        var table = plot.parentElement.querySelector("details.chart__table");
        if (table) { table.open = false; }
      });
    });
  }

  function redraw(payload) {
    if (typeof Plotly === "undefined" || !payload || !payload.charts) { return; }
    Object.keys(payload.charts).forEach(function (key) {
      var plot = document.querySelector('[data-chart="' + key + '"]');
      if (!plot) { return; }
      var figure = payload.charts[key];
      Plotly.react(plot, figure.data, figure.layout, config);
      var source = document.getElementById(plot.dataset.figure);
      if (source) { source.textContent = JSON.stringify(figure); }
    });
    var latest = document.querySelector('[data-testid="charts-latest"]');
    if (latest && payload.latest_window_end) {
      latest.textContent = payload.latest_window_end.replace("T", " ").slice(0, 19);
    }
    var section = document.getElementById("canary-charts");
    if (section) { section.dataset.refreshed = String(Number(section.dataset.refreshed || 0) + 1); }
  }

  document.addEventListener("htmx:afterRequest", function (event) {
    var source = event.detail && event.detail.elt;
    if (!source || !source.hasAttribute("data-chart-refresh") || !event.detail.successful) { return; }
    try {
      redraw(JSON.parse(event.detail.xhr.responseText));
    } catch (err) {
      console.error("chart refresh: " + err);
    }
  });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
