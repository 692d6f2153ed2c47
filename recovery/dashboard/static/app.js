// recovery dashboard: renders the /events stream. Every name and message from the
// server goes into the page as text (textContent), never as markup.
"use strict";

(() => {
  const HISTORY = 300;   // rate points kept per tile (five minutes at one a second)
  const TIMELINE = 200;  // timeline entries kept
  const SVG = "http://www.w3.org/2000/svg";
  const STATES = ["closed", "open", "half_open", "repairing"];
  const STATE_TEXT = { closed: "CLOSED", open: "OPEN", half_open: "HALF-OPEN", repairing: "REPAIRING" };

  const { $, el, setText, fmtRate, clock } = RecoveryDashboard;
  const tiles = new Map();  // tile id -> {el, parts, history}
  const groups = new Map(); // open incident id -> {el, parts}: its header and its tiles
  let incidents = new Map(); // open incident id -> the feed's view of it (two members or more)
  let control = false;
  let serverSkew = 0;       // server clock minus this browser's, in ms
  let lastSeq = 0;

  // -- the token: from the URL's fragment (never sent to a server), kept for the tab --
  const token = (() => {
    const match = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (match) {
      sessionStorage.setItem("recovery-token", decodeURIComponent(match[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    return sessionStorage.getItem("recovery-token");
  })();

  // -- small format helpers (the rest are in common.js) --
  function fmtDuration(seconds) {
    if (!isFinite(seconds) || seconds < 0) return "";
    seconds = Math.floor(seconds);
    if (seconds < 60) return seconds + "s";
    if (seconds < 3600) return Math.floor(seconds / 60) + "m " + (seconds % 60) + "s";
    return Math.floor(seconds / 3600) + "h " + Math.floor((seconds % 3600) / 60) + "m";
  }
  function secondsSince(iso) {
    return iso ? (Date.now() + serverSkew - Date.parse(iso)) / 1000 : NaN;
  }
  // A tile of the manager's (a plugin or a dependency), not an extra breaker's.
  const managed = (view) => view.kind !== "breaker";
  // A dependency is an upstream nothing here restarts: it is down and probed, never in
  // a crash loop of restarts. Out of service either way:
  const down = (recovery) => Boolean(recovery.failed || recovery.crash_loop);
  // -- the notice when controls are on but this page has no token --
  function showControlNotice() {
    const notice = $("notice");
    notice.hidden = !(control && !token);
    notice.textContent = "Controls are on, but this page has no token: open the URL the server printed.";
  }

  // -- messages --
  function applySnapshot(data) {
    control = Boolean(data.control);
    showControlNotice();
    for (const [id, tile] of tiles) { tile.el.remove(); tiles.delete(id); }
    for (const group of groups.values()) group.el.remove();
    groups.clear();
    order.last = "";
    applyTick(data);
    for (const [id, columns] of Object.entries(data.history || {})) {
      const tile = tiles.get(id);
      if (!tile) continue;
      tile.history.requests = columns.requests.slice(-HISTORY);
      tile.history.failures = columns.failures.slice(-HISTORY);
      drawRates(tile);
    }
    $("timeline").replaceChildren();
    lastSeq = 0;
    for (const entry of data.timeline || []) addEvent(entry, false);
    $("quiet").hidden = $("timeline").childElementCount > 0;
  }

  function applyTick(data) {
    serverSkew = data.now * 1000 - Date.now();
    renderManager(data.manager || {});
    incidents = new Map((data.incidents || []).map((incident) => [incident.id, incident]));
    for (const view of data.tiles || []) {
      let tile = tiles.get(view.id);
      if (!tile) tile = addTile(view);
      if (view.rate) {
        tile.history.requests.push(view.rate[0]);
        tile.history.failures.push(view.rate[1]);
        if (tile.history.requests.length > HISTORY) {
          tile.history.requests.shift();
          tile.history.failures.shift();
        }
      }
      renderTile(tile, view);
    }
    overview();
    $("empty").hidden = tiles.size > 0;
  }

  // The header's counts by state, and the order of the tiles.
  function overview() {
    const counts = { closed: 0, open: 0, half_open: 0, repairing: 0, failed: 0, crash_loop: 0,
      down: 0, warning: 0, incidents: incidents.size };
    for (const { view } of tiles.values()) {
      const state = view.circuit_breaker.state;
      counts[state] = (counts[state] || 0) + 1;
      const recovery = view.recovery || {};
      if (view.kind === "dependency") {
        if (down(recovery)) counts.down += 1;
      } else {
        if (recovery.failed) counts.failed += 1;
        if (recovery.crash_loop) counts.crash_loop += 1;
      }
      if (view.warning && view.warning.active) counts.warning += 1;
    }
    renderSummary(counts);
    renderGroups();
    order([...tiles.values()].map((tile) => tile.view));
  }

  // Trouble first: with a hundred tiles, the open one must not be below the fold.
  const RANK = { open: 1, repairing: 2, half_open: 3, closed: 5 };
  function rank(view) {
    const recovery = view.recovery || {};
    if (recovery.failed || recovery.crash_loop) return 0;
    if (recovery.degraded && view.circuit_breaker.state === "closed") return 4;
    if (view.warning && view.warning.active && view.circuit_breaker.state === "closed") return 4;
    return RANK[view.circuit_breaker.state] ?? 5;
  }
  // An open incident's tiles go together under its header, oldest incident first, its
  // root's tile first and then its members in the order they joined; the rest after.
  function order(views) {
    const placed = [];  // [box, tile ids]
    const grouped = new Set();
    for (const [id, incident] of incidents) {
      const ids = [incident.root, ...incident.members.filter((name) => name !== incident.root)]
        .map((name) => "plugin:" + name).filter((tileId) => tiles.has(tileId));
      ids.forEach((tileId) => grouped.add(tileId));
      placed.push([groups.get(id), ids]);
    }
    const rest = views.filter((view) => !grouped.has(view.id))
      .map((view, index) => [rank(view), index, view.id])
      .sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((entry) => entry[2]);
    const key = placed.map(([, ids]) => ids.join("\n")).join("\n\n") + "\n\n\n" + rest.join("\n");
    if (key === order.last) return;
    order.last = key;
    const box = $("tiles");
    for (const [group, ids] of placed) {
      box.append(group.el);
      for (const tileId of ids) group.parts.tiles.append(tiles.get(tileId).el);
    }
    for (const id of rest) box.append(tiles.get(id).el);
  }

  // -- incidents: one header per open incident, over its tiles --
  function renderGroups() {
    for (const [id, group] of groups) {
      if (incidents.has(id)) continue;
      // Resolved: its tiles go back among the rest before the group goes.
      for (const node of [...group.parts.tiles.children]) $("tiles").append(node);
      group.el.remove();
      groups.delete(id);
      order.last = "";
    }
    for (const [id, incident] of incidents) {
      let group = groups.get(id);
      if (!group) {
        const parts = { title: el("h2", "incident-title"), facts: el("div", "incident-facts num"),
          members: el("div", "incident-members"), tiles: el("div", "incident-tiles") };
        const head = el("header", "incident-head");
        head.append(parts.title, parts.facts, parts.members);
        const node = el("section", "incident");
        node.dataset.incident = id;
        node.setAttribute("aria-label", "Incident " + id);
        node.append(head, parts.tiles);
        group = { el: node, parts };
        groups.set(id, group);
        order.last = "";
      }
      const { parts } = group;
      setText(parts.title, "Incident \u00b7 root " + incident.root);
      const lasted = fmtDuration(secondsSince(incident.started));
      const cause = incident.cause_known
        ? "cause known" + (incident.links.length ? ": linked by " + incident.links.join(", ") : "")
        : "cause unknown (no declared link)";
      setText(parts.facts, "started " + clock(incident.started_t) + (lasted ? " (" + lasted + " ago)" : "") +
        " \u00b7 " + incident.members.length + " members \u00b7 " + cause);
      group.el.classList.toggle("unknown", !incident.cause_known);
      setText(parts.members, "members: " + incident.members.join(", "));
      parts.members.title = incident.members.join(", ");
    }
  }

  function addEvent(entry, live) {
    if (entry.seq <= lastSeq) return;  // already had it in the snapshot
    lastSeq = entry.seq;
    RecoveryDashboard.prependEvent(entry, TIMELINE);
    if (live) {
      $("quiet").hidden = true;
      const tile = tiles.get(entry.tile);
      if (entry.state && tile) {  // a transition shows at once; the next tick fills in the rest
        tile.view.circuit_breaker.state = entry.state;
        tile.view.circuit_breaker.state_change_time = entry.time;
        renderTile(tile, tile.view, false);
        overview();
      }
    }
  }

  // -- the header --
  function renderSummary(counts) {
    const labels = [["closed", "closed"], ["open", "open"], ["half_open", "half-open"],
      ["repairing", "repairing"], ["failed", "failed"], ["crash_loop", "crash loop"],
      ["down", "down"], ["warning", "early warning"], ["incidents", "incidents"]];
    const summary = $("summary");
    if (summary.childElementCount !== labels.length) {
      summary.replaceChildren(...labels.map(([key]) => {
        const node = el("span", "count num");
        node.dataset.state = key;
        return node;
      }));
    }
    labels.forEach(([key, label], index) => {
      const node = summary.children[index];
      setText(node, counts[key] + " " + (key === "incidents" && counts[key] === 1 ? "incident" : label));
      node.classList.toggle("zero", counts[key] === 0);
    });
  }

  function renderManager(manager) {
    const stuckStrategies = (manager.stuck_strategies || []).length;
    const stuckChecks = manager.stuck_health_checks || 0;
    const items = [
      ["manager", manager.running ? "running" : "stopped", !manager.running],
      ["auto-recovery", manager.auto_recovery ? "on" : "off", false],
      ["health checks", manager.health_checking ? "on" : "off", false],
      ["episodes in progress", String(manager.episodes_in_progress || 0), false],
      ["stuck threads", String(stuckStrategies + stuckChecks), stuckStrategies + stuckChecks > 0],
    ];
    const box = $("manager");
    if (box.childElementCount !== items.length) {
      box.replaceChildren(...items.map(() => {
        const item = el("span", "item");
        item.append(el("span", "label"), document.createTextNode(" "), el("strong"));
        return item;
      }));
    }
    items.forEach(([label, value, bad], index) => {
      const item = box.children[index];
      item.classList.toggle("bad", bad);
      setText(item.firstChild, label);
      setText(item.lastChild, value);
    });
  }

  // -- tiles --
  function addTile(view) {
    const parts = {
      name: el("h3", "tile-name", view.name),
      state: el("span", "state"),
      sub: el("div", "sub num"),
      badges: el("div", "badges"),
      requests: rateRow("requests", "req/s"),
      failures: rateRow("failures", "fail/s"),
      facts: el("dl", "facts num"),
      health: lineRow("health"),
      recovery: lineRow("recovery"),
      warning: lineRow("early warning"),
      orders: el("div", "orders"),
      controls: el("div", "controls"),
      result: el("div", "result"),
    };
    parts.name.title = view.name;
    const head = el("div", "tile-head");
    head.append(parts.name, parts.state);
    const node = el("article", "tile");
    node.dataset.kind = view.kind;
    node.append(head, parts.sub, parts.badges, parts.requests.row, parts.failures.row, parts.facts);
    if (managed(view)) node.append(parts.warning.row, parts.health.row, parts.recovery.row, parts.orders);
    node.append(parts.controls, parts.result);
    const tile = { id: view.id, view, el: node, parts, history: { requests: [], failures: [] }, controlsFor: "" };
    tiles.set(view.id, tile);
    $("tiles").append(node);
    return tile;
  }

  function rateRow(kind, label) {
    const row = el("div", "rate " + kind);
    const value = el("span", "rate-value num");
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("viewBox", "0 0 100 26");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    const title = document.createElementNS(SVG, "title");
    const area = document.createElementNS(SVG, "polygon");
    area.setAttribute("class", "area");
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", "line");
    svg.append(title, area, line);
    row.append(value, el("span", "rate-label", label), svg);
    return { row, value, title, area, line, label };
  }

  function lineRow(label) {
    const row = el("div", "line");
    const value = el("span", "value");
    row.append(el("span", "label", label), value);
    return { row, value };
  }

  // The chart spans at least a minute, then grows with the history to five minutes,
  // the newest point at the right edge.
  function drawSpark(part, values) {
    const count = values.length;
    const span = Math.min(Math.max(count, 60), HISTORY) - 1;
    const peak = Math.max(1e-9, ...values);
    const points = values.map((v, i) => {
      const x = 100 - ((count - 1 - i) / span) * 100;
      const y = 25 - (v / peak) * 23;
      return x.toFixed(2) + "," + y.toFixed(2);
    });
    part.line.setAttribute("points", points.join(" "));
    part.area.setAttribute("points", count ? points[0].split(",")[0] + ",26 " + points.join(" ") + " 100,26" : "");
    part.title.textContent = part.label + ": peak " + fmtRate(Math.max(0, ...values)) +
      " over the last " + fmtDuration(span + 1);
  }

  function drawRates(tile) {
    drawSpark(tile.parts.requests, tile.history.requests);
    drawSpark(tile.parts.failures, tile.history.failures);
  }

  function renderTile(tile, view, redraw = true) {
    tile.view = view;
    const { parts } = tile;
    const cb = view.circuit_breaker;
    const recovery = view.recovery || {};
    tile.el.dataset.state = cb.state;
    setText(parts.state, STATE_TEXT[cb.state] || String(cb.state).toUpperCase());
    const inState = fmtDuration(secondsSince(cb.state_change_time));
    setText(parts.sub, String(view.kind) +
      (inState ? " \u00b7 " + STATE_TEXT[cb.state].toLowerCase() + " for " + inState : ""));

    const badges = [];
    const dependency = view.kind === "dependency";
    if (dependency) {
      if (down(recovery)) badges.push(["DOWN", "bad"]);
    } else {
      if (recovery.failed) badges.push(["FAILED", "bad"]);
      if (recovery.crash_loop) badges.push(["CRASH LOOP", "bad"]);
    }
    if (recovery.degraded) badges.push(["DEGRADED", "warn"]);
    if (recovery.in_progress) badges.push([dependency ? "PROBING" : "RECOVERING", "info"]);
    const warning = view.warning;
    if (warning && warning.active) badges.push(["EARLY WARNING", "warn"]);
    const incident = incidents.get(view.incident);
    if (incident && incident.root === view.name) badges.push(["ROOT", "bad"]);
    else if (incident && view.held_until) {
      badges.push(["held until " + clock(Date.parse(view.held_until) / 1000), "info"]);
    }
    const health = view.health_check;
    if (health && health.stuck) badges.push(["CHECK STUCK", "warn"]);
    const badgeKey = badges.map((b) => b[0]).join("|");
    if (parts.badges.dataset.key !== badgeKey) {
      parts.badges.dataset.key = badgeKey;
      parts.badges.replaceChildren(...badges.map(([text, level]) => el("span", "badge " + level, text)));
    }

    const rate = view.rate || [0, 0];
    setText(parts.requests.value, fmtRate(rate[0]));
    setText(parts.failures.value, fmtRate(rate[1]));
    if (redraw) drawRates(tile);

    // One vocabulary with the terminal, /status.json and the metrics: "rejected" is
    // the calls the breaker refused, "fallback served" the calls the fallback answered.
    const facts = [
      ["requests", String(cb.total_requests)],
      ["rejected", String(cb.total_rejections)],
    ];
    if (managed(view)) facts.push(["fallback served", String(recovery.fallbacks_served || 0)]);
    facts.push(["slow", String(cb.total_slow_calls)], windowFact(cb));
    renderFacts(parts.facts, facts);

    if (managed(view)) {
      renderHealth(parts.health, health);
      if (dependency) renderDependency(parts.recovery, recovery, cb);
      else renderRecovery(parts.recovery, recovery, cb);
      renderWarning(parts.warning, warning);
      renderOrders(parts.orders, view.strategy_order || []);
    }
    renderControls(tile, recovery);
  }

  // The failure ratio of the breaker's window: its last N calls, counted afresh from
  // each state change (so just after opening it has nothing in it, whatever the rate of
  // failures per second said a moment before). Open, it takes no calls: no ratio.
  function windowFact(cb) {
    const label = "failed, last " + (cb.window_size || "") + " calls";
    if (cb.state === "open" || cb.state === "repairing") return [label, "\u2014 (" + STATE_TEXT[cb.state].toLowerCase() + ")"];
    return [label, Math.round((cb.window_failure_rate || 0) * 100) + "%"];
  }

  function renderFacts(dl, facts) {
    if (dl.childElementCount !== facts.length) {
      dl.replaceChildren(...facts.map(() => {
        const div = el("div");
        div.append(el("dt"), el("dd"));
        return div;
      }));
    }
    facts.forEach(([label, value], index) => {
      setText(dl.children[index].firstChild, label);
      setText(dl.children[index].lastChild, value);
    });
  }

  function renderHealth(part, health) {
    let text = "no health check";
    let level = "";
    if (health && health.enabled) {
      const last = health.last_result;
      if (!last) {
        text = "not checked yet";
      } else {
        const ago = fmtDuration(secondsSince(health.last_check));
        text = (last.healthy ? "healthy" : "unhealthy") + " in " + last.duration +
          (ago ? ", " + ago + " ago" : "");
        if (!last.healthy && last.message) text += " \u2014 " + last.message;
        level = last.healthy ? "good" : "bad";
      }
      if (health.consecutive_fails > 0) text += " (" + health.consecutive_fails + " failed in a row)";
    }
    part.row.className = "line " + level;
    setText(part.value, text);
  }

  function renderRecovery(part, recovery, cb) {
    let text = "no recovery yet";
    let level = "";
    if (recovery.in_progress) {
      // An episode runs: say so first, whatever its last action was.
      const since = fmtDuration(secondsSince(recovery.episode_started));
      text = "in progress" + (since ? " for " + since : "");
      if (recovery.last_action) {
        const ok = recovery.last_action_success;
        text += " \u00b7 last: " + recovery.last_action + " " + (ok === true ? "succeeded" : ok === false ? "failed" : "running");
      }
      level = "info";
    } else if (recovery.last_action) {
      const ok = recovery.last_action_success;
      text = recovery.last_action + " " + (ok === true ? "succeeded" : ok === false ? "failed" : "running");
      level = ok === true ? "good" : ok === false ? "bad" : "";
    }
    if (recovery.attempts) {
      text += " \u00b7 " + recovery.attempts + (recovery.attempts === 1 ? " attempt" : " attempts");
    }
    if (recovery.crash_loop && recovery.next_attempt) {
      const wait = -secondsSince(recovery.next_attempt);
      text += " \u00b7 next attempt " + (wait > 0 ? "in " + fmtDuration(wait) : "due");
      level = "warn";
    } else if (cb.next_retry_time && cb.state === "open") {
      const wait = -secondsSince(cb.next_retry_time);
      if (wait > 0) text += " \u00b7 trial in " + fmtDuration(wait);
    }
    if (recovery.failed && recovery.failed_reason) {
      text += " \u00b7 " + recovery.failed_reason;
      level = "bad";
    }
    part.row.className = "line " + level;
    setText(part.value, text);
  }

  // The strategy order in force and why, one line per failure type recovered from (the
  // latest first): "order (learned): reload 5/5 \u00b7 1.2s, restart 0/2". The failure
  // type is named once there are several. Nothing before any recovery.
  function renderOrders(box, orders) {
    if (box.childElementCount !== orders.length) {
      box.replaceChildren(...orders.map(() => lineRow("order").row));
    }
    orders.forEach((order, index) => {
      const row = box.children[index];
      const label = "order" + (orders.length > 1 ? " for " + order.failure_type : "") +
        " (" + order.mode + "):";
      setText(row.firstChild, label);
      setText(row.lastChild, order.text);
      row.title = "strategy order for " + order.failure_type + " failures, " + order.mode +
        ": verified recoveries/attempts \u00b7 median time to recovery";
    });
  }

  // A dependency's recovery line: "down since 12:00:03 (2m 5s), next probe in 25s".
  function renderDependency(part, recovery, cb) {
    let text = "up";
    let level = "";
    if (down(recovery)) {
      const since = recovery.down_since;
      text = "down" + (since ? " since " + clock(Date.parse(since) / 1000) : "");
      const lasted = fmtDuration(secondsSince(since));
      if (lasted) text += " (" + lasted + ")";
      if (recovery.crash_loop && recovery.next_attempt) {
        const wait = -secondsSince(recovery.next_attempt);
        text += ", next probe " + (wait > 0 ? "in " + fmtDuration(wait) : "due");
      } else if (!recovery.crash_loop) {
        text += ", until reset";
      }
      level = "bad";
    } else if (recovery.in_progress) {
      const since = fmtDuration(secondsSince(recovery.episode_started));
      text = "probing" + (since ? " for " + since : "");
      level = "info";
    } else if (recovery.last_action) {
      const ok = recovery.last_action_success;
      text = "up \u00b7 last " + recovery.last_action + " " + (ok === true ? "succeeded" : ok === false ? "failed" : "running");
    }
    if (!down(recovery) && cb.next_retry_time && cb.state === "open") {
      const wait = -secondsSince(cb.next_retry_time);
      if (wait > 0) text += " \u00b7 trial in " + fmtDuration(wait);
    }
    part.row.className = "line " + level;
    setText(part.value, text);
  }

  // The early warning's line, only while one is up: what moved, from what, and when the
  // breaker would open at this trend.
  const WARNING_WORDS = { failure_rate: "failure rate", latency: "latency" };
  function renderWarning(part, warning) {
    const up = warning ? Object.keys(WARNING_WORDS).filter((kind) => warning[kind].active) : [];
    part.row.hidden = up.length === 0;
    const text = up.map((kind) => {
      const w = warning[kind];
      const reading = kind === "failure_rate"
        ? (w.current * 100).toFixed(1) + "%, usually " + (w.baseline * 100).toFixed(1) + "%"
        : Math.round(w.current * 1000) + "ms, usually " + Math.round(w.baseline * 1000) + "ms";
      let trip = "";
      if (w.expected_trip_in !== null && w.expected_trip_in !== undefined) {
        trip = w.expected_trip_in < 1 ? ", opens any moment" : ", opens in ~" + fmtDuration(w.expected_trip_in);
      }
      return WARNING_WORDS[kind] + " " + reading + trip;
    }).join(" \u00b7 ");
    part.row.className = "line warn";
    setText(part.value, text);
  }

  // -- controls: drawn only when the server allows them and this page has the token --
  function renderControls(tile, recovery) {
    const actions = [];
    if (control && token) {
      actions.push(["reset", "Reset", ""], ["force-open", "Force open", "danger"]);
      if (down(recovery)) {
        // The same control (reset: not failed, breaker closed), in the words of the kind.
        actions.push(["end-crash-loop", tile.view.kind === "dependency" ? "Mark as up" : "End crash loop", ""]);
      }
    }
    const key = actions.map((a) => a[0]).join("|");
    if (tile.controlsFor === key) return;
    tile.controlsFor = key;
    tile.parts.controls.replaceChildren(...actions.map(([action, label, kind]) => {
      const button = el("button", kind, label);
      button.type = "button";
      button.dataset.action = action;
      button.addEventListener("click", () => act(tile, action, button));
      return button;
    }));
  }

  async function act(tile, action, button) {
    button.disabled = true;
    const body = {};
    body[managed(tile.view) ? "plugin" : "breaker"] = tile.view.name;
    let message;
    try {
      const response = await fetch("/control/" + action, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Recovery-Token": token },
        body: JSON.stringify(body),
      });
      const answer = await response.json().catch(() => ({}));
      message = response.ok ? answer.message || "done" : "refused: " + (answer.error || response.status);
    } catch (error) {
      message = "failed: " + error;
    }
    button.disabled = false;
    setText(tile.parts.result, message);
  }

  RecoveryDashboard.stream({
    snapshot: applySnapshot,
    tick: applyTick,
    event: (entry) => addEvent(entry, true),
  }, showControlNotice);
})();
