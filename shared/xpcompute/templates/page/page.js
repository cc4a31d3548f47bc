(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("page-config").textContent);
  const base = window.location.pathname.replace(/\/scorecard\/?$/, "");
  const bar = document.getElementById("live-indicator");
  const barText = document.getElementById("live-text");
  const form = document.getElementById("slice-form");
  const message = document.getElementById("slice-message");
  const hint = document.getElementById("dimension-hint");
  const dims = {};
  config.dimensions.forEach(function (d) { dims[d.name] = d; });
  let signature = document.getElementById("live-top").dataset.signature;
  let state = document.getElementById("live-top").dataset.state;
  let waitingFor = null;
  let filter = null;
  let timer = null;
  let busy = false;

  // Signed in at /login: state-changing requests carry the session's CSRF token (the readable
  // xpcompute_csrf cookie; the session cookie itself is HttpOnly). With a key or auth off there is none.
  function withCsrf(headers) {
    const found = document.cookie.split("; ").find(function (c) { return c.startsWith("xpcompute_csrf="); });
    if (found) { headers["X-CSRF-Token"] = decodeURIComponent(found.slice("xpcompute_csrf=".length)); }
    return headers;
  }

  function signatureOf(s) {
    const p = s.progress;
    return [s.state, p.total, p.succeeded, p.failed, p.running].join("|");
  }

  function say(kind, html) {
    message.className = kind === "error" ? "alert" : kind === "ok" ? "alert ok" : "alert warn";
    message.innerHTML = html;
  }

  function text(value) {
    const span = document.createElement("span");
    span.textContent = value;
    return span.innerHTML;
  }

  function setBar(kind, words) {
    bar.className = "livebar " + kind;
    barText.textContent = words + " · checked " + new Date().toLocaleTimeString();
  }

  function schedule(seconds) {
    if (timer !== null) { clearTimeout(timer); }
    timer = setTimeout(poll, seconds * 1000);
  }

  function activate(container) {
    container.querySelectorAll("script").forEach(function (old) {
      const fresh = document.createElement("script");
      fresh.text = old.textContent;
      old.replaceWith(fresh);
    });
  }

  function rowsOf(label) {
    return Array.from(document.querySelectorAll("#live-results tr.row[data-metric]"))
      .filter(function (tr) { return tr.dataset.slice === label; });
  }

  function applyFilter() {
    document.querySelectorAll("#live-results tr.row[data-metric]").forEach(function (tr) {
      tr.hidden = filter !== null && tr.dataset.slice !== filter;
    });
    document.querySelectorAll("#live-top .slices .chip").forEach(function (chip) {
      chip.classList.toggle("selected", chip.dataset.slice === filter);
    });
    const old = document.getElementById("filter-note");
    if (old) { old.remove(); }
    const lead = document.querySelector("#scorecard .lead");
    if (filter !== null && lead) {
      const note = document.createElement("div");
      note.id = "filter-note";
      note.className = "alert warn";
      note.innerHTML = "Showing only the slice <b>" + text(filter) + "</b>. " +
        '<a href="#" data-clear-filter>Show every slice</a>';
      lead.after(note);
    }
  }

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-clear-filter]")) {
      event.preventDefault();
      filter = null;
      applyFilter();
      return;
    }
    const chip = event.target.closest(".slices .chip");
    if (!chip) { return; }
    filter = filter === chip.dataset.slice ? null : chip.dataset.slice;
    applyFilter();
  });

  function checkWaiting() {
    if (waitingFor === null) { return; }
    const rows = rowsOf(waitingFor);
    if (rows.length > 0 && state === "RUNNING") {
      // fits land one by one: say how far it is, and announce the slice once its jobs are all done
      say("pending", "Slice <b>" + text(waitingFor) + "</b>: " + rows.length + " row" +
        (rows.length === 1 ? "" : "s") + " so far, more are landing.");
      return;
    }
    if (rows.length > 0) {
      say("ok", "Slice <b>" + text(waitingFor) + "</b> is in the scorecard: " + rows.length +
        " row" + (rows.length === 1 ? "" : "s") + " (highlighted below).");
      rows.forEach(function (tr) { tr.classList.add("new-slice"); tr.style.background = "#e7f5ff"; });
      waitingFor = null;
    }
  }

  async function refresh() {
    const response = await fetch(window.location.pathname + "?part=live", {cache: "no-store"});
    if (!response.ok) { throw new Error("the page answered " + response.status); }
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    if (window.Plotly) {
      document.querySelectorAll("#live-results .js-plotly-plot").forEach(function (el) { window.Plotly.purge(el); });
    }
    ["live-top", "live-results"].forEach(function (id) {
      const fresh = doc.getElementById(id);
      const current = document.getElementById(id);
      if (fresh && current) {
        current.replaceWith(fresh);
        activate(fresh);
      }
    });
    signature = document.getElementById("live-top").dataset.signature;
    state = document.getElementById("live-top").dataset.state;
    applyFilter();
    checkWaiting();
  }

  async function poll() {
    if (busy) { schedule(config.poll_s); return; }
    busy = true;
    let next = config.poll_s;
    try {
      const response = await fetch(base, {headers: {Accept: "application/json"}, cache: "no-store"});
      const body = await response.json().catch(function () { return {}; });
      if (!response.ok) {
        setBar("lost", "cannot read the analysis (" + response.status + ": " + (body.message || response.statusText) + ")");
        next = config.idle_poll_s;
      } else {
        if (signatureOf(body) !== signature) { await refresh(); }
        const running = body.state === "RUNNING";
        const p = body.progress;
        setBar(running ? "running" : "done", running
          ? "live: " + (p.succeeded + p.failed) + " of " + p.total + " jobs finished, updating as results land"
          : "analysis " + body.state.toLowerCase() + "; add a slice below to compute more");
        next = running || waitingFor !== null ? config.poll_s : config.idle_poll_s;
      }
    } catch (err) {
      setBar("lost", "lost contact with the API (" + err.message + "); retrying");
      next = config.idle_poll_s;
    } finally {
      busy = false;
      schedule(next);
    }
  }

  function typed(dimension, value) {
    const d = dims[dimension];
    if (d && d.dtype === "bigint" && /^-?\d+$/.test(value)) { return parseInt(value, 10); }
    if (d && d.dtype === "boolean" && /^(true|false)$/i.test(value)) { return value.toLowerCase() === "true"; }
    return value;
  }

  function showHint() {
    const d = dims[form.elements.dimension.value.trim()];
    if (!d) {
      hint.innerHTML = config.dimensions.length
        ? "Dimensions you can slice by: " + config.dimensions.map(function (x) { return "<code>" + text(x.name) + "</code>"; }).join(", ") + "."
        : "Type a column of the analysis table.";
      return;
    }
    hint.innerHTML = "<b>" + text(d.name) + "</b>" + (d.description ? ": " + text(d.description) : "") +
      (d.values ? " Values: " + d.values.map(function (v) { return "<code>" + text(v) + "</code>"; }).join(" ") + "." : "") +
      " Several values separated by commas make one slice of users with any of them.";
  }

  form.elements.dimension.addEventListener("input", showHint);
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const dimension = form.elements.dimension.value.trim();
    const values = form.elements.values.value.split(",").map(function (v) { return v.trim(); })
      .filter(function (v) { return v.length > 0; }).map(function (v) { return typed(dimension, v); });
    const body = {all_of: [{column: dimension, values: values, negate: form.elements.negate.checked}]};
    const name = form.elements.name.value.trim();
    if (name) { body.name = name; }
    await requestSlice(body, form.querySelector("button"));
  });

  // one POST path for every live-slice request: the form above and each segment's button (#segments)
  async function requestSlice(body, button) {
    button.disabled = true;
    say("pending", "Requesting the slice…");
    try {
      const response = await fetch(base + "/slices", {
        method: "POST", headers: withCsrf({"Content-Type": "application/json", Accept: "application/json"}),
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(function () { return {}; });
      if (!response.ok) {
        say("error", "<b>The API refused this slice (" + response.status + ")</b>: " +
          text(answer.message || response.statusText));
        return;
      }
      waitingFor = answer.label;
      say("pending", "Slice <b>" + text(answer.label) + "</b> requested: it is being compressed and fitted; " +
        "its rows appear in the scorecard below as soon as they are ready.");
      checkWaiting();
      schedule(0);
    } catch (err) {
      say("error", "<b>Could not reach the API</b>: " + text(err.message));
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-slice-body]");
    if (!button) { return; }
    event.preventDefault();
    message.scrollIntoView({block: "nearest"});
    requestSlice(JSON.parse(button.dataset.sliceBody), button);
  });

  showHint();
  setBar(state === "RUNNING" ? "running" : "done", state === "RUNNING"
    ? "live: updating as results land" : "analysis " + state.toLowerCase() + "; add a slice below to compute more");
  schedule(state === "RUNNING" ? config.poll_s : config.idle_poll_s);
})();
