// recovery dashboard, shared by both pages (loaded before app.js): the /events
// connection and its liveness, the timeline entry, and small DOM and format helpers.
// Every name and message from the server goes into the page as text, never as markup.
"use strict";

const RecoveryDashboard = (() => {
  const STALE_MS = 3500; // no message for this long while connected: say so

  const $ = (id) => document.getElementById(id);

  // -- small DOM and format helpers --
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }
  function fmtRate(value) {
    if (value >= 100) return value.toFixed(0);
    if (value >= 10) return value.toFixed(1);
    return value.toFixed(2);
  }
  function clock(seconds) {
    return new Date(seconds * 1000).toLocaleTimeString([], { hour12: false });
  }

  // -- the timeline: one entry on top, the oldest past `limit` dropped --
  function prependEvent(entry, limit) {
    const item = el("li", "event");
    item.dataset.level = entry.level;
    const time = el("time", "num", clock(entry.t));
    time.dateTime = entry.time;
    const what = el("div", "what");
    const who = el("span", "who", entry.name);
    who.title = entry.name;
    what.append(who, el("span", "text", entry.text));
    item.append(time, el("span", "kind", entry.kind), what);
    const list = $("timeline");
    list.prepend(item);
    while (list.childElementCount > limit) list.lastElementChild.remove();
  }

  // -- the connection: /events, its state in #connection, a lost one said in #notice --
  // `handlers` maps each event name to what its parsed data goes to; `onLive` runs each
  // time the connection becomes live (after a message, before its handler).
  function stream(handlers, onLive) {
    let lastMessage = 0;
    let source = null;

    function setConnection(state) {
      const node = $("connection");
      const was = node.dataset.state;
      node.dataset.state = state;
      setText(node, state);
      document.body.classList.toggle("offline", state === "disconnected");
      const notice = $("notice");
      if (state === "disconnected" && was !== "disconnected" && was !== "connecting") {
        notice.textContent = "Connection lost at " + clock(Date.now() / 1000) +
          ": the figures below are from then. Reconnecting…";
        notice.hidden = false;
      } else if (state === "live") {
        onLive();
      }
    }
    function connect() {
      source = new EventSource("/events");
      for (const [name, handle] of Object.entries(handlers)) {
        source.addEventListener(name, (e) => { received(); handle(JSON.parse(e.data)); });
      }
      source.onerror = () => {
        setConnection("disconnected");
        if (source.readyState === EventSource.CLOSED) {  // the browser gave up: start again
          source.close();
          setTimeout(connect, 2000);
        }
      };
    }
    function received() {
      lastMessage = Date.now();
      if ($("connection").dataset.state !== "live") setConnection("live");
    }
    setInterval(() => {
      if ($("connection").dataset.state === "live" && Date.now() - lastMessage > STALE_MS) {
        setConnection("stale");
      }
    }, 1000);
    connect();
  }

  return Object.freeze({ $, el, setText, fmtRate, clock, prependEvent, stream });
})();
