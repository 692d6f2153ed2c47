// recovery fleet dashboard: renders the /events stream of the fleet view. Every name
// and message from the server goes into the page as text (textContent), never as markup.
"use strict";

(() => {
  const TIMELINE = 200;  // timeline entries kept
  const STATE_TEXT = { closed: "CLOSED", open: "OPEN", half_open: "HALF-OPEN", repairing: "REPAIRING" };
  const WORST = ["open", "half_open", "repairing", "closed"];
  const TILES = 12;  // breaker tiles before those closed everywhere are folded
  const ROWS = 6;    // breaker rows of a node before its closed ones are folded

  const { $, el, setText, fmtRate } = RecoveryDashboard;
  let lastSeq = 0;

  function stateText(state) {
    return STATE_TEXT[state] || String(state).toUpperCase();
  }
  function plural(count, noun) {
    return count + " " + noun + (count === 1 ? "" : "s");
  }
  function inTrouble(breaker) {
    return breaker.nodes.some((n) => !n.silent && n.state !== "closed");
  }
  function flagged(breaker) {
    const plugin = breaker.plugin;
    return Boolean(plugin && (plugin.failed || plugin.crash_loop || plugin.degraded));
  }
  // A <details> that stays open across the once-a-second redraw.
  const unfolded = new Set();
  function fold(key, label, content, className) {
    const details = el("details", className);
    details.open = unfolded.has(key);
    details.addEventListener("toggle", () => {
      if (details.open) unfolded.add(key); else unfolded.delete(key);
    });
    details.append(el("summary", "", label), content);
    return details;
  }
  function worst(states) {
    for (const state of WORST) if (states.includes(state)) return state;
    return "closed";
  }

  // -- messages --
  function applySnapshot(data) {
    render(data);
    $("timeline").replaceChildren();
    lastSeq = 0;
    for (const entry of data.timeline || []) addEvent(entry);
  }

  function render(data) {
    const nodes = data.nodes || [];
    const breakers = data.breakers || [];
    renderSummary(nodes, breakers);
    renderRedis(data);
    // Trouble always gets a tile; past a dozen, breakers closed everywhere fold into one list.
    const shown = breakers.filter((b, i) => i < TILES || inTrouble(b));
    const folded = breakers.filter((b, i) => !(i < TILES || inTrouble(b)));
    const box = $("breakers");
    box.replaceChildren(...shown.map(breakerTile));
    if (folded.length) {
      const names = el("div", "chips");
      for (const breaker of folded) {
        const chip = el("span", "chip");
        chip.dataset.state = "closed";
        chip.append(el("span", "cname", breaker.name));
        chip.title = breaker.name + ": closed on " + plural(breaker.nodes.length, "node");
        names.append(chip);
      }
      box.append(fold("breakers", "closed on every live node: " + plural(folded.length, "more breaker"),
        names, "tile folded"));
    }
    $("nodes").replaceChildren(...nodes.map(nodeTile));
    $("no-breakers").hidden = breakers.length > 0;
    $("empty").hidden = nodes.length > 0;
  }

  function addEvent(entry) {
    if (entry.seq <= lastSeq) return;
    lastSeq = entry.seq;
    RecoveryDashboard.prependEvent(entry, TIMELINE);
    $("quiet").hidden = true;
  }

  // -- the header --
  function renderSummary(nodes, breakers) {
    const silent = nodes.filter((n) => n.silent).length;
    const openSomewhere = breakers.filter((b) => (b.counts.open || 0) > 0).length;
    const live = nodes.length - silent;
    const items = [
      ["closed", plural(live, "node") + " live", live],
      ["half_open", silent + " silent", silent],
      ["", plural(breakers.length, "breaker"), breakers.length],
      ["open", openSomewhere + " open somewhere", openSomewhere],
    ];
    $("summary").replaceChildren(...items.map(([state, text, count]) => {
      const node = el("span", "count num" + (count === 0 ? " zero" : ""), text);
      if (state) node.dataset.state = state;
      return node;
    }));
  }

  function renderRedis(data) {
    const redis = data.redis || {};
    const dropped = Object.entries(redis.dropped || {});
    const total = dropped.reduce((sum, [, n]) => sum + n, 0);
    const items = [
      ["namespace", data.namespace || "", false],
      ["redis", redis.connected ? "connected" : "disconnected", !redis.connected],
      ["summaries", String(redis.received || 0), false],
      ["dropped", String(total) + (total ? " (" + dropped.map(([r, n]) => r + " " + n).join(", ") + ")" : ""), total > 0],
    ];
    const notice = $("redis-notice");
    const unreachable = !redis.connected && Boolean(redis.last_error);  // not while first connecting
    notice.hidden = !unreachable;
    setText(notice, unreachable ? "This dashboard cannot reach Redis (" + redis.last_error +
      "): no summary can arrive, so every node fades. Retrying…" : "");
    $("manager").replaceChildren(...items.map(([label, value, bad]) => {
      const item = el("span", "item" + (bad ? " bad" : ""));
      item.append(el("span", "label", label), document.createTextNode(" "), el("strong", "", value));
      if (label === "redis" && bad && redis.last_error) item.title = redis.last_error;
      return item;
    }));
  }

  // -- breaker by breaker: which nodes have it open --
  function breakerTile(breaker) {
    const live = breaker.nodes.filter((n) => !n.silent);
    const state = worst(live.map((n) => n.state));
    const tile = el("article", "tile breaker");
    tile.dataset.state = state;
    const name = el("h3", "tile-name", breaker.name);
    name.title = breaker.name;
    const head = el("div", "tile-head");
    head.append(name, el("span", "state", stateText(state)));
    const open = breaker.counts.open || 0;
    const half = breaker.counts.half_open || 0;
    const silent = breaker.nodes.length - live.length;
    const of = " of " + plural(live.length, silent ? "live node" : "node");
    const repairing = breaker.counts.repairing || 0;
    let sub = "no live node";
    if (open && live.length === 1) sub = "open on its " + (silent ? "one live node" : "node");
    else if (open) sub = "open on " + open + of;
    else if (half) sub = "half-open on " + half + of;
    else if (repairing) sub = "repairing on " + repairing + of;
    else if (live.length === 1) sub = "closed on its " + (silent ? "one live node" : "node");
    else if (live.length) sub = "closed on all " + plural(live.length, silent ? "live node" : "node");
    if (silent) sub += " \u00b7 " + silent + " silent";
    const chips = el("div", "chips");
    for (const node of breaker.nodes) {
      // The node's name may be cut short, its state never.
      const chip = el("span", "chip" + (node.silent ? " silent" : ""));
      chip.append(el("span", "cname", node.node),
        el("span", "cstate", stateText(node.state) + (node.silent ? " (silent)" : "")));
      chip.dataset.state = node.state;
      chip.dataset.node = node.node;
      chip.title = node.opened_by ? "opened by " + node.opened_by : node.node;
      chips.append(chip);
    }
    tile.append(head, el("div", "sub", sub), chips);
    return tile;
  }

  // -- node by node --
  function nodeTile(node) {
    const tile = el("article", "tile node" + (node.silent ? " silent" : ""));
    tile.dataset.state = worst(node.breakers.map((b) => b.state));
    tile.dataset.node = node.id;
    const name = el("h3", "tile-name", node.id);
    name.title = node.id;
    const head = el("div", "tile-head");
    head.append(name, el("span", "state", node.silent ? "SILENT" : "LIVE"));
    const heard = node.heard_ago < 1.5 ? "heard just now" : "last heard " + Math.round(node.heard_ago) + "s ago";
    const rows = el("ul", "rows");
    const quiet = [];
    for (const breaker of node.breakers) {
      if (rows.childElementCount < ROWS || breaker.state !== "closed" || flagged(breaker)) {
        rows.append(breakerRow(breaker));
      } else {
        quiet.push(breaker);
      }
    }
    if (quiet.length) {
      const more = el("ul", "rows");
      for (const breaker of quiet) more.append(breakerRow(breaker));
      rows.append(fold("node:" + node.id, plural(quiet.length, "more breaker") + ", closed", more, "fold"));
    }
    tile.append(head, el("div", "sub num", node.host + " \u00b7 pid " + node.pid + " \u00b7 " + heard), rows);
    if (node.omitted > 0) {
      tile.append(el("div", "omitted", "+" + node.omitted + " more of " + node.breakers_total +
        " breakers not in the summary (size limit; trouble is sent first)"));
    }
    return tile;
  }

  function breakerRow(breaker) {
    const row = el("li", "row num");
    row.dataset.state = breaker.state;
    const name = el("span", "rname", breaker.name);
    name.title = breaker.name;
    row.append(name, el("span", "rstate", stateText(breaker.state)));
    const facts = [fmtRate(breaker.rate[0]) + " req/s", fmtRate(breaker.rate[1]) + " fail/s",
      breaker.requests + " requests", breaker.rejections + " rejected"];
    // The window starts afresh at each state change, and an open breaker takes no calls.
    if (breaker.state === "closed" || breaker.state === "half_open") {
      facts.push(Math.round(breaker.window_failure_rate * 100) + "% failed in its window");
    }
    if (breaker.opened_by) facts.push("opened by " + breaker.opened_by);
    const plugin = breaker.plugin;
    if (plugin && plugin.last_action) {
      const ok = plugin.last_action_success;
      facts.push("last action " + plugin.last_action + " " + (ok === true ? "succeeded" : ok === false ? "failed" : "running"));
    }
    row.append(el("span", "rmore", facts.join(" \u00b7 ")));
    if (plugin) {
      const badges = el("div", "badges");
      if (plugin.failed) badges.append(el("span", "badge bad", "FAILED"));
      if (plugin.crash_loop) badges.append(el("span", "badge bad", "CRASH LOOP"));
      if (plugin.degraded) badges.append(el("span", "badge warn", "DEGRADED"));
      row.append(badges);
    }
    return row;
  }

  RecoveryDashboard.stream({ snapshot: applySnapshot, tick: render, event: addEvent }, () => {
    $("notice").hidden = true;
  });
})();
