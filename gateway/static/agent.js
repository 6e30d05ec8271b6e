// The agents' console: the live queue of conversations handed to people, and the
// conversation an agent holds.
//
// The agent's credential (an agent key or a JWT) is typed into the login field and kept
// in sessionStorage, so it goes with the tab. It travels only in the first frame of the
// live socket and in the Authorization header of the REST calls, never in a URL. Every
// user's text is put in the page with textContent: nothing they write is read as HTML.
(function () {
  "use strict";

  var root = document.getElementById("console");
  if (!root) return;

  var TOKEN_KEY = "botserver.agent_token";
  var api = root.dataset.api;
  var socketPath = root.dataset.socket;
  var store = openStorage();

  var el = {
    status: document.getElementById("status"),
    whoami: document.getElementById("whoami"),
    signout: document.getElementById("signout"),
    login: document.getElementById("login"),
    token: document.getElementById("token"),
    loginError: document.getElementById("login-error"),
    desk: document.getElementById("desk"),
    queue: document.getElementById("queue"),
    queueEmpty: document.getElementById("queue-empty"),
    conversation: document.getElementById("conversation"),
    title: document.getElementById("conversation-title"),
    badge: document.getElementById("conversation-status"),
    facts: document.getElementById("conversation-facts"),
    transcript: document.getElementById("transcript"),
    actionError: document.getElementById("action-error"),
    take: document.getElementById("take"),
    reply: document.getElementById("reply"),
    replyText: document.getElementById("reply-text"),
    releaseBox: document.getElementById("release-box"),
    releaseMode: document.getElementById("release-mode"),
    release: document.getElementById("release"),
  };

  var socket = null;
  var me = null; // {id, name} from the ready frame
  var handoffs = {}; // session id -> handoff, as the queue shows it
  var order = []; // session ids in the queue's order
  var selected = null; // the session id shown
  var cursor = null; // the last history id shown for it
  var loading = null; // the history request under way
  var reloadAgain = false;
  var retries = 0;
  var signingOut = false;

  el.login.addEventListener("submit", function (evt) {
    evt.preventDefault();
    var token = el.token.value.trim();
    if (!token) return;
    store.setItem(TOKEN_KEY, token);
    el.token.value = "";
    connect();
  });
  el.signout.addEventListener("click", function () { signOut(""); });
  el.take.addEventListener("click", function () { act("take", null); });
  el.release.addEventListener("click", function () {
    var body = {};
    if (el.releaseMode.value) body.mode = el.releaseMode.value;
    act("release", body);
  });
  el.reply.addEventListener("submit", function (evt) {
    evt.preventDefault();
    var text = el.replyText.value;
    if (!text.trim() || !selected) return;
    call("POST", "/handoffs/" + encodeURIComponent(selected) + "/messages", { text: text })
      .then(function () {
        el.replyText.value = "";
        el.replyText.focus();
        loadHistory();
      })
      .catch(showActionError);
  });

  if (store.getItem(TOKEN_KEY)) connect();

  // -- the live socket ------------------------------------------------------------------

  function connect() {
    var token = store.getItem(TOKEN_KEY);
    if (!token) return;
    signingOut = false;
    setStatus("connecting", "Connecting…");
    var url = new URL(socketPath, location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(url.toString());
    socket.addEventListener("open", function () {
      socket.send(JSON.stringify({ type: "auth", token: token }));
    });
    socket.addEventListener("message", function (evt) {
      var frame;
      try { frame = JSON.parse(evt.data); } catch (e) { return; }
      onFrame(frame);
    });
    socket.addEventListener("close", function (evt) {
      socket = null;
      if (signingOut) return;
      if (evt.code === 1008) {
        signOut("That credential was refused: " + (evt.reason || "not an agent of this bot"));
        return;
      }
      setStatus("offline", "Offline, reconnecting…");
      var delay = Math.min(1000 * Math.pow(1.5, retries++), 10000) * (0.5 + Math.random() / 2);
      setTimeout(connect, delay);
    });
  }

  function onFrame(frame) {
    if (frame.type === "ready") {
      retries = 0;
      me = frame.agent;
      el.whoami.textContent = me.name;
      el.login.hidden = true;
      el.loginError.hidden = true;
      el.desk.hidden = false;
      el.signout.hidden = false;
      setStatus("online", "Online");
    } else if (frame.type === "queue") {
      handoffs = {};
      order = [];
      frame.handoffs.forEach(function (h) { handoffs[h.session_id] = h; order.push(h.session_id); });
      renderQueue();
      if (selected) loadHistory();
    } else if (frame.type === "handoff") {
      var h = frame.handoff;
      if (h.status === "waiting" || h.status === "active") {
        if (!handoffs[h.session_id]) order.push(h.session_id);
        handoffs[h.session_id] = Object.assign(handoffs[h.session_id] || {}, h);
      } else {
        delete handoffs[h.session_id];
        order = order.filter(function (id) { return id !== h.session_id; });
        if (selected === h.session_id) showClosed(h);
      }
      renderQueue();
    } else if (frame.type === "message") {
      var known = handoffs[frame.session_id];
      if (known && frame.role === "user") {
        known.last_message = { text: frame.text, at: frame.at };
        if (selected !== frame.session_id) known.unread = true;
        renderQueue();
      }
      if (selected === frame.session_id) loadHistory();
    } else if (frame.type === "error" && !me) {
      el.loginError.textContent = frame.message;
      el.loginError.hidden = false;
    }
  }

  function signOut(reason) {
    signingOut = true;
    store.removeItem(TOKEN_KEY);
    if (socket) socket.close(1000, "signed out");
    me = null;
    selected = null;
    el.desk.hidden = true;
    el.signout.hidden = true;
    el.login.hidden = false;
    el.whoami.textContent = "";
    el.loginError.textContent = reason;
    el.loginError.hidden = !reason;
    setStatus("signed-out", "Signed out");
  }

  // -- the queue --------------------------------------------------------------------------

  function renderQueue() {
    el.queue.replaceChildren();
    order.forEach(function (id) {
      var h = handoffs[id];
      var item = document.createElement("li");
      item.className = "queue-item" + (id === selected ? " selected" : "");
      item.dataset.sessionId = id;
      item.dataset.status = h.status;
      var button = document.createElement("button");
      button.type = "button";
      button.className = "queue-open";
      var who = document.createElement("span");
      who.className = "queue-user";
      who.textContent = h.user_id;
      var meta = document.createElement("span");
      meta.className = "queue-meta";
      meta.textContent = h.channel + " · " + describe(h);
      button.append(who, meta);
      if (h.last_message) {
        var last = document.createElement("span");
        last.className = "queue-last";
        last.textContent = h.last_message.text;
        button.append(last);
      }
      if (h.unread) item.classList.add("unread");
      button.addEventListener("click", function () { select(id); });
      item.append(button);
      el.queue.append(item);
    });
    el.queueEmpty.hidden = order.length > 0;
    if (selected && handoffs[selected]) showActions(handoffs[selected]);
  }

  function describe(h) {
    if (h.status === "waiting") {
      var ask = [h.department, h.attendant].filter(Boolean).join(", ");
      return "waiting" + (ask ? " for " + ask : "") + (h.priority !== "normal" ? " (" + h.priority + ")" : "");
    }
    if (h.agent && me && h.agent.id === me.id) return "yours";
    return "with " + (h.agent ? h.agent.name : "an agent");
  }

  // -- the conversation shown -------------------------------------------------------------

  function select(id) {
    selected = id;
    cursor = null;
    el.transcript.replaceChildren();
    el.actionError.hidden = true;
    el.conversation.hidden = false;
    var h = handoffs[id];
    if (h) h.unread = false;
    renderQueue();
    loadHistory();
  }

  function showActions(h) {
    el.title.textContent = h.user_id;
    el.badge.textContent = describe(h);
    el.badge.dataset.status = h.status;
    var facts = [h.channel];
    if (h.reason) facts.push(h.reason);
    if (h.context) facts.push(h.context);
    el.facts.textContent = facts.join(" · ");
    var mine = h.status === "active" && h.agent && me && h.agent.id === me.id;
    el.take.hidden = h.status !== "waiting";
    el.reply.hidden = !mine;
    el.releaseBox.hidden = !(mine || h.status === "waiting");
  }

  function showClosed(h) {
    el.badge.textContent = h.status === "abandoned" ? "returned to the bot (timeout)" : "back with the bot";
    el.badge.dataset.status = h.status;
    el.take.hidden = true;
    el.reply.hidden = true;
    el.releaseBox.hidden = true;
    loadHistory();
  }

  function loadHistory() {
    if (!selected) return;
    if (loading) { reloadAgain = true; return; }
    var id = selected;
    var query = cursor ? "?limit=500&after=" + encodeURIComponent(cursor) : "?limit=100";
    loading = call("GET", "/sessions/" + encodeURIComponent(id) + "/messages" + query)
      .then(function (page) {
        if (id !== selected) return;
        page.messages.forEach(addMessage);
        if (page.next) cursor = page.next;
        el.transcript.scrollTop = el.transcript.scrollHeight;
      })
      .catch(showActionError)
      .then(function () {
        loading = null;
        if (reloadAgain) { reloadAgain = false; loadHistory(); }
      });
  }

  function addMessage(m) {
    var div = document.createElement("div");
    div.className = "line line-" + m.role;
    div.dataset.id = m.id;
    var who = document.createElement("span");
    who.className = "line-who";
    who.textContent = m.role === "user" ? "User" : m.role === "agent" ? "Agent" : "Bot";
    var text = document.createElement("span");
    text.className = "line-text";
    text.textContent = m.text;
    div.append(who, text);
    el.transcript.append(div);
  }

  function act(what, body) {
    if (!selected) return;
    el.actionError.hidden = true;
    call("POST", "/handoffs/" + encodeURIComponent(selected) + "/" + what, body)
      .then(function (answer) {
        var h = answer.handoff;
        if (h.status === "waiting" || h.status === "active") {
          handoffs[h.session_id] = Object.assign(handoffs[h.session_id] || {}, h);
          renderQueue();
          if (what === "take") el.replyText.focus();
        } else {
          delete handoffs[h.session_id];
          order = order.filter(function (id) { return id !== h.session_id; });
          renderQueue();
          showClosed(h);
        }
      })
      .catch(showActionError);
  }

  function showActionError(error) {
    el.actionError.textContent = error.message || String(error);
    el.actionError.hidden = false;
  }

  // -- the REST API -------------------------------------------------------------------------

  function call(method, path, body) {
    var init = {
      method: method,
      headers: { Authorization: "Bearer " + store.getItem(TOKEN_KEY) },
      credentials: "omit",
      cache: "no-store",
    };
    if (body) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(api + path, init).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        if (!response.ok) {
          if (response.status === 401) signOut(data.message || "Signed out");
          throw new Error(data.message || response.statusText);
        }
        return data;
      });
    });
  }

  function setStatus(state, text) {
    el.status.dataset.state = state;
    el.status.textContent = text;
  }

  function openStorage() {
    try {
      var probe = "botserver.probe";
      window.sessionStorage.setItem(probe, probe);
      window.sessionStorage.removeItem(probe);
      return window.sessionStorage;
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
