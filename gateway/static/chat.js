// The chat widget's own behaviour; htmx and its ws extension do the rest.
//
// What htmx cannot know lives in localStorage: the browser's user id (shared
// by every bot of this server) and, per bot, the last session id. Both go
// into the WebSocket URL at every connect and reconnect, so a reload, or a
// reconnect after a server restart, resumes the session; on such a connect
// the server replays the session's recent history, which replaces what the
// page shows.
(function () {
  "use strict";

  var root = document.getElementById("chat");
  if (!root || !window.htmx) return;

  var bot = root.dataset.bot;
  var USER_KEY = "botserver.user_id";
  var SESSION_KEY = "botserver." + bot + ".session_id";

  var store = openStorage();
  var messages = document.getElementById("messages");
  var scroller = document.getElementById("scroller");
  var statusElt = document.getElementById("status");
  var input = document.getElementById("text");
  var resuming = false; // whether the current connection named a session

  if (root.dataset.accent) root.style.setProperty("--accent", root.dataset.accent);

  // After a server restart, come back within seconds: the extension's default
  // backoff doubles up to 64 s. Jitter still spreads a crowd of widgets.
  htmx.config.wsReconnectDelay = function (retryCount) {
    var base = Math.min(1000 * Math.pow(1.5, retryCount), 10000);
    return base * (0.5 + Math.random() / 2);
  };

  // The ws extension calls this for every connect and reconnect.
  htmx.createWebSocket = function (url) {
    var target = new URL(url, location.href);
    target.searchParams.set("user_id", userId());
    var sessionId = store.getItem(SESSION_KEY);
    if (sessionId) target.searchParams.set("session_id", sessionId);
    resuming = Boolean(sessionId);
    return new WebSocket(target.toString());
  };

  root.addEventListener("htmx:wsConnecting", function () {
    setStatus("connecting", "Connecting…");
  });
  root.addEventListener("htmx:wsOpen", function () {
    // The server is about to replay the session: show it once, not twice.
    if (resuming) messages.replaceChildren();
    setStatus("online", "Online");
  });
  root.addEventListener("htmx:wsClose", function (evt) {
    setStatus("offline", "Offline, reconnecting…");
    // The extension retries abnormal closes (1006, 1011-1013) by itself; a
    // server shutting down says 1001 "going away", and will likely be back.
    if (evt.detail.event.code === 1001) {
      setTimeout(evt.detail.socketWrapper.reconnect, 500 + Math.random() * 1500);
    }
  });

  root.addEventListener("htmx:wsConfigSend", function (evt) {
    var text = evt.detail.parameters.text;
    if (typeof text !== "string" || !text.trim()) evt.preventDefault();
  });
  root.addEventListener("htmx:wsAfterSend", function () {
    input.value = "";
    document.getElementById("suggestions").replaceChildren();
    input.focus();
  });

  root.addEventListener("htmx:wsAfterMessage", function () {
    var sessionId = document.getElementById("session").dataset.sessionId;
    if (sessionId) store.setItem(SESSION_KEY, sessionId);
    var stale = messages.querySelector('[data-error="unknown_session"]');
    if (stale) {
      // The stored session is gone (or not this user's); the server carries
      // on with the user's active session or a new one, nothing to show.
      stale.remove();
      store.removeItem(SESSION_KEY);
      document.getElementById("session").dataset.sessionId = "";
    }
    scroller.scrollTop = scroller.scrollHeight;
  });

  function userId() {
    var id = store.getItem(USER_KEY);
    if (!id) {
      // crypto.randomUUID needs a secure context; getRandomValues does not.
      var bytes = crypto.getRandomValues(new Uint8Array(16));
      id = "web-" + Array.from(bytes, function (b) {
        return b.toString(16).padStart(2, "0");
      }).join("");
      store.setItem(USER_KEY, id);
    }
    return id;
  }

  function setStatus(state, text) {
    statusElt.dataset.state = state;
    statusElt.textContent = text;
  }

  // Private browsing can make localStorage throw; the chat still works,
  // it just forgets the conversation on reload.
  function openStorage() {
    try {
      var probe = "botserver.probe";
      window.localStorage.setItem(probe, probe);
      window.localStorage.removeItem(probe);
      return window.localStorage;
    } catch (e) {
      var memory = {};
      return {
        getItem: function (k) { return Object.prototype.hasOwnProperty.call(memory, k) ? memory[k] : null; },
        setItem: function (k, v) { memory[k] = String(v); },
        removeItem: function (k) { delete memory[k]; },
      };
    }
  }
})();
