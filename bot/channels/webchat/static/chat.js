// The web chat page: sends what the person types or picks, shows what the bot says.
// Every message carries an id made here, so sending it again after a failure is harmless;
// the server answers only once it has stored it. Live messages come over a WebSocket, and
// by long polling when a WebSocket cannot be opened.
(() => {
  "use strict";
  const body = document.body;
  const kind = body.dataset.kind;
  const csrf = body.dataset.csrf;
  const S = JSON.parse(document.getElementById("strings").textContent);
  const api = body.dataset.api || `/chat/api/${kind}`;
  const log = document.getElementById("log");
  const status = document.getElementById("status");
  const text = document.getElementById("text");
  let last = 0;
  let socketFailures = 0;

  function newId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function say(message) {
    status.textContent = message || "";
    status.hidden = !message;
  }

  function scrollDown() {
    window.scrollTo(0, document.body.scrollHeight);
  }

  function line(who, cls) {
    const item = document.createElement("li");
    item.className = `msg ${cls}`;
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who;
    item.appendChild(name);
    log.appendChild(item);
    return item;
  }

  function mine(label, picture) {
    const item = line(S.you, "me");
    if (picture) {
      const img = document.createElement("img");
      img.src = picture;
      img.alt = label;
      item.appendChild(img);
    }
    const p = document.createElement("p");
    p.textContent = label;
    item.appendChild(p);
    scrollDown();
    return item;
  }

  function show(message) {
    if (message.id <= last) return;
    last = message.id;
    const item = line(S.bot, "bot");
    item.dataset.id = message.id;
    if (message.media) {
      const m = message.media;
      const href = m.file ? `${api}/file/${m.file}` : m.url;
      if (href && m.kind === "photo") {
        const img = document.createElement("img");
        img.src = href;
        img.alt = S.file;
        item.appendChild(img);
      } else if (href) {
        const a = document.createElement("a");
        a.href = href;
        a.textContent = S.file;
        a.rel = "noopener";
        item.appendChild(a);
      }
    }
    const p = document.createElement("p");
    p.textContent = message.text;
    item.appendChild(p);
    if (message.choices && message.choices.length) {
      const row = document.createElement("div");
      row.className = "choices";
      for (const [key, label] of message.choices) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = label;
        b.addEventListener("click", () => {
          for (const other of row.querySelectorAll("button")) other.disabled = true;
          b.classList.add("picked");
          mine(label);
          send({ choice: key });
        });
        row.appendChild(b);
      }
      item.appendChild(row);
    }
    scrollDown();
  }

  async function post(url, init) {
    const delays = [1, 2, 4, 8, 15, 30];
    for (let attempt = 0; ; attempt++) {
      let answer = null;
      try {
        answer = await fetch(url, { ...init, credentials: "same-origin" });
      } catch (_) { /* offline: try again */ }
      if (answer && answer.ok) { say(""); return true; }
      if (answer && answer.status === 429) { say(S.slow_down); return false; }
      if (answer && answer.status === 413) { say(S.too_big); return false; }
      if (answer && answer.status === 415) { say(S.bad_type); return false; }
      if (answer && answer.status < 500) { return false; }
      say(S.not_sent);
      await new Promise((r) => setTimeout(r, 1000 * delays[Math.min(attempt, delays.length - 1)]));
    }
  }

  // One message after another, in the order the person sent them.
  let sending = Promise.resolve();
  function inOrder(work) {
    sending = sending.then(work, work);
    return sending;
  }

  function send(fields) {
    const message = { id: newId(), ...fields };
    return inOrder(() => post(`${api}/send`, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(message),
    }));
  }

  async function upload(file) {
    if (file.size > S.max_bytes) { say(S.too_big); return; }
    const picture = file.type.startsWith("image/") ? URL.createObjectURL(file) : null;
    mine(file.name, picture);
    const form = new FormData();
    form.append("file", file, file.name);
    const id = newId();
    await inOrder(() => post(`${api}/upload?id=${id}`, {
      method: "POST", headers: { "X-CSRF-Token": csrf }, body: form,
    }));
  }

  // ---- receiving ----
  function connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    let socket;
    try {
      socket = new WebSocket(`${proto}://${location.host}${api}/ws?after=${last}`);
    } catch (_) {
      poll();
      return;
    }
    let opened = false;
    socket.onopen = () => { opened = true; socketFailures = 0; say(""); };
    socket.onmessage = (event) => show(JSON.parse(event.data));
    socket.onclose = () => {
      if (!opened) socketFailures++;
      if (socketFailures >= 3) { poll(); return; }  // no WebSockets here: poll instead
      say(opened ? S.offline : "");
      setTimeout(connect, opened ? 1000 : 2000 * socketFailures);
    };
  }

  async function poll() {
    body.dataset.transport = "polling";
    for (;;) {
      try {
        const answer = await fetch(`${api}/messages?after=${last}&wait=1`,
                                   { credentials: "same-origin" });
        if (!answer.ok) throw new Error(String(answer.status));
        const data = await answer.json();
        say("");
        data.messages.forEach(show);
      } catch (_) {
        say(S.offline);
        await new Promise((r) => setTimeout(r, 3000));
      }
    }
  }

  // ---- sending ----
  document.getElementById("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = text.value.trim();
    if (!value) return;
    text.value = "";
    mine(value);
    send({ text: value });
  });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      document.getElementById("composer").requestSubmit();
    }
  });
  document.getElementById("menu").addEventListener("click", () => send({ text: "/menu" }));
  document.getElementById("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    event.target.value = "";
    if (file) upload(file);
  });
  document.getElementById("where").addEventListener("click", () => {
    if (!navigator.geolocation) { say(S.no_location); return; }
    navigator.geolocation.getCurrentPosition((where) => {
      mine(S.location);
      send({ location: [where.coords.latitude, where.coords.longitude] });
    }, () => say(S.no_location), { enableHighAccuracy: true, timeout: 15000 });
  });
  for (const button of document.querySelectorAll("[data-command]")) {
    button.addEventListener("click", () => {
      button.hidden = true;  // the report has begun: its questions follow below
      mine(button.textContent);
      send({ text: button.dataset.command });
    });
  }
  const followup = document.getElementById("followup");
  if (followup) {
    followup.addEventListener("submit", (event) => {
      event.preventDefault();
      const ref = followup.elements.ref.value.trim();
      const code = followup.elements.code.value.trim();
      if (!ref || !code) return;
      followup.elements.code.value = "";
      mine(`${S.ref}: ${ref}`);
      send({ text: `/followup ${ref} ${code}` });
    });
  }

  if ("WebSocket" in window) connect(); else poll();
})();
