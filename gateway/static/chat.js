// The chat widget's own behaviour; htmx and its ws extension do the rest.
//
// What htmx cannot know lives in localStorage: the browser's visitor token
// (its identity, signed by the server and shared by every bot of it; the
// page brings a fresh one, kept only when the browser has none) and, per
// bot, the last session id. Both go in the first frame of every connect and
// reconnect, never in the WebSocket URL (URLs end up in logs), so a reload,
// or a reconnect after a server restart, resumes the session; on such a
// connect the server replays the session's recent history, which replaces
// what the page shows.
(function () {
  "use strict";

  var root = document.getElementById("chat");
  if (!root || !window.htmx) return;

  var bot = root.dataset.bot;
  var TOKEN_KEY = "botserver.visitor_token";
  var SESSION_KEY = "botserver." + bot + ".session_id";

  var store = openStorage();
  var messages = document.getElementById("messages");
  var scroller = document.getElementById("scroller");
  var statusElt = document.getElementById("status");
  var input = document.getElementById("text");
  var resuming = false; // whether the current connection named a session
  var renewed = false; // whether this page replaced a refused stored token
  store.removeItem("botserver.user_id"); // the unsigned id of earlier versions

  if (root.dataset.accent) root.style.setProperty("--accent", root.dataset.accent);

  // After a server restart, come back within seconds: the extension's default
  // backoff doubles up to 64 s. Jitter still spreads a crowd of widgets.
  htmx.config.wsReconnectDelay = function (retryCount) {
    var base = Math.min(1000 * Math.pow(1.5, retryCount), 10000);
    return base * (0.5 + Math.random() / 2);
  };

  // The ws extension calls this for every connect and reconnect.
  // The credential is the first frame: this listener is added before the
  // extension's own, so it goes out before any message the extension queued.
  htmx.createWebSocket = function (url) {
    var socket = new WebSocket(new URL(url, location.href).toString());
    var sessionId = store.getItem(SESSION_KEY);
    resuming = Boolean(sessionId);
    socket.addEventListener("open", function () {
      socket.send(JSON.stringify({
        type: "auth",
        token: visitorToken(),
        session_id: sessionId || undefined,
      }));
    });
    return socket;
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
    // 1008: the stored token was refused (the server's key changed). Once,
    // start over as the new visitor this page brought.
    if (evt.detail.event.code === 1008 && renew()) {
      setTimeout(evt.detail.socketWrapper.reconnect, 100);
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

  // The player PLAY opened: its close button (and Escape) close it as STOP does,
  // which stops what it plays.
  root.addEventListener("click", function (evt) {
    var target = evt.target;
    if (target && target.closest && target.closest("[data-player-close]")) closePlayer();
  });
  document.addEventListener("keydown", function (evt) {
    var player = document.getElementById("player");
    if (evt.key === "Escape" && player && !player.hidden) closePlayer();
  });

  function closePlayer() {
    var player = document.getElementById("player");
    if (!player) return;
    player.querySelectorAll("audio, video").forEach(function (media) { media.pause(); });
    player.replaceChildren();
    player.className = "player";
    player.hidden = true;
  }

  function visitorToken() {
    var token = store.getItem(TOKEN_KEY);
    if (!token) {
      token = root.dataset.visitorToken;
      store.setItem(TOKEN_KEY, token);
    }
    return token;
  }

  function renew() {
    if (renewed || store.getItem(TOKEN_KEY) === root.dataset.visitorToken) return false;
    renewed = true;
    store.setItem(TOKEN_KEY, root.dataset.visitorToken);
    store.removeItem(SESSION_KEY);
    var refused = messages.querySelector('[data-error="unauthorized"]');
    if (refused) refused.remove();
    return true;
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
