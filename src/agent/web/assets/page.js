// Follows the agent's state over Server-Sent Events and swaps in the
// fragments the server made; keeps the selected stage in the URL
// (/stages/NAME) so that a link can be shared. Changes nothing on the agent.
(function () {
  "use strict";
  var graph = document.getElementById("graph");
  var source = document.getElementById("source");
  var detail = document.getElementById("detail");
  var live = document.getElementById("live");
  var view = null;

  function selectedFromPath() {
    var m = location.pathname.match(/^\/stages\/([^/]+)$/);
    return m ? decodeURIComponent(m[1]) : null;
  }

  function showDetail() {
    var name = selectedFromPath();
    graph.querySelectorAll(".stage.selected").forEach(function (g) {
      g.classList.remove("selected");
    });
    if (name === null) {
      detail.innerHTML = '<p class="empty">Select a stage to see its Jobs, objects and logs.</p>';
      document.title = "stagegate · stages";
      return;
    }
    document.title = "stagegate · " + name;
    graph.querySelectorAll(".stage").forEach(function (g) {
      if (g.getAttribute("data-stage") === name) g.classList.add("selected");
    });
    if (view === null) return;
    if (Object.prototype.hasOwnProperty.call(view.details, name)) {
      if (swap(detail, view.details[name])) loadHealth(name);
    } else {
      var p = document.createElement("p");
      p.className = "empty";
      p.textContent = "No stage named " + name + ".";
      detail.replaceChildren(p);
    }
  }

  // Replace a fragment only when it changed, so that a reader's scroll
  // position and text selection survive updates elsewhere.
  var shown = new WeakMap();
  function swap(element, html) {
    if (shown.get(element) === html) return false;
    element.innerHTML = html;
    shown.set(element, html);
    return true;
  }

  // The objects' live health, read from the cluster on selection.
  function loadHealth(name) {
    if (!detail.querySelector("td.health")) return;
    fetch("/api/stages/" + encodeURIComponent(name) + "/health")
      .then(function (response) { return response.ok ? response.json() : []; })
      .then(function (objects) {
        if (selectedFromPath() !== name) return;
        var cells = {};
        detail.querySelectorAll("td.health").forEach(function (td) {
          cells[td.getAttribute("data-object")] = td;
        });
        objects.forEach(function (o) {
          var td = cells[o.kind + "/" + (o.namespace || "") + "/" + o.name];
          if (!td) return;
          td.textContent = o.health + (o.message ? ": " + o.message : "");
          td.className = "health health-" + o.health.toLowerCase();
        });
      })
      .catch(function () {});
  }

  function render() {
    swap(source, view.source);
    swap(graph, Object.keys(view.details).length
      ? view.svg
      : '<p class="empty">No stages yet: the agent has not planned a revision.</p>');
    showDetail();
  }

  document.addEventListener("click", function (event) {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    var link = event.target.closest("a");
    if (!link) return;
    var href = link.getAttribute("href") || "";
    var m = href.match(/^(\/stages\/[^/#]+|\/)(#.*)?$/);
    if (!m) return;
    event.preventDefault();
    if (m[1] !== location.pathname) history.pushState(null, "", m[1] + (m[2] || ""));
    showDetail();
    if (m[2]) {
      var target = document.getElementById(m[2].slice(1));
      if (target) target.scrollIntoView({ block: "nearest" });
    }
  });
  window.addEventListener("popstate", showDetail);

  // EventSource reconnects by itself after a dropped connection; when the
  // agent answered with an error instead (restarting), start over.
  function connect() {
    var events = new EventSource("/api/events");
    events.addEventListener("status", function (event) {
      view = JSON.parse(event.data);
      render();
    });
    events.onopen = function () {
      live.textContent = "live";
      live.className = "live on";
    };
    events.onerror = function () {
      live.textContent = "reconnecting…";
      live.className = "live off";
      if (events.readyState === EventSource.CLOSED) {
        setTimeout(connect, 1000);
      }
    };
  }
  connect();
})();
