// monq dashboard: one script, no build step. Pages are shells rendered by the
// server; this reads the JSON API and the event websocket with the login cookie,
// so the API's permission checks decide what appears. Text from the server is set
// with textContent only, never parsed as HTML.
"use strict";

const XSRF = document.querySelector('meta[name="xsrf"]')?.content || "";
const STATES = ["pending", "running", "deferred", "failed"];

// --- small helpers -------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString();
}

function flash(message, kind = "error") {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = message;
  box.className = "flash " + kind;
  box.hidden = !message;
}

class ApiError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (method !== "GET") headers["X-XSRFToken"] = XSRF;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const reply = await fetch("/api/v1" + path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = {};
  try { data = await reply.json(); } catch (_) { /* an empty reply */ }
  if (reply.status === 401 && document.body.dataset.page !== "login") {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }
  if (!reply.ok) throw new ApiError(reply.status, data.message || reply.statusText);
  return data;
}

function tbody(table) { return document.querySelector(`#${table} tbody`); }

function fill(table, rows, empty = "nothing to show") {
  const body = tbody(table);
  body.replaceChildren(...rows);
  if (!rows.length) {
    const cols = document.querySelectorAll(`#${table} thead th`).length;
    body.append(el("tr", { class: "empty" }, el("td", { colspan: cols, text: empty })));
  }
}

function jobLink(data) {
  if (!data || data.name === "UnauthorizedJob") return el("span", { class: "masked", text: "UnauthorizedJob" });
  return el("a", { href: `/jobs/${data._id}`, text: data.name });
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

// --- the event websocket: reconnects and asks for what it missed -----------------
let streaming = false;

function subscribe(channels, onEvent) {
  streaming = true;
  let lastId = null;
  let delay = 500;
  const live = document.getElementById("live");
  function open() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/api/v1/event`);
    socket.onopen = () => {
      delay = 500;
      const interest = { type: "interest", data: channels };
      if (lastId) interest.since = lastId;
      socket.send(JSON.stringify(interest));
      if (live) { live.textContent = "live"; live.className = "live on"; }
    };
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "error") { flash(event.message); return; }
      if (event.type === "interest") return;
      if (event._id) lastId = event._id;
      onEvent(event);
    };
    socket.onclose = (closed) => {
      if (live) { live.textContent = "offline"; live.className = "live"; }
      if (closed.code === 4001) { location.href = "/login"; return; }
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }
  open();
}

// --- pages ---------------------------------------------------------------------
const pages = {};

pages.login = () => {
  document.getElementById("login-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = new FormData(e.target);
    try {
      await api("POST", "/login", { username: form.get("username"), password: form.get("password") });
      // the server vetted it (same-site paths only); check the origin again here
      const next = new URL(e.target.dataset.next || "/", location.origin);
      location.href = next.origin === location.origin ? next.pathname + next.search + next.hash : "/";
    } catch (err) { flash(err.message); }
  });
};

function drawChart(container, series) {
  const width = 800, height = 200, pad = 24;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "chart-svg");
  const top = Math.max(1, ...series.flatMap((p) => STATES.map((s) => p[s] || 0)));
  const x = (i) => pad + (i * (width - 2 * pad)) / Math.max(1, series.length - 1);
  const y = (v) => height - pad - (v * (height - 2 * pad)) / top;
  for (const state of STATES) {
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", series.map((p, i) => `${x(i)},${y(p[state] || 0)}`).join(" "));
    line.setAttribute("class", "line " + state);
    svg.append(line);
  }
  const text = (x, y, value, anchor = "start") => {
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x); label.setAttribute("y", y); label.setAttribute("class", "axis");
    label.setAttribute("text-anchor", anchor);
    label.textContent = value;
    svg.append(label);
  };
  text(2, 12, String(top));
  text(2, height - pad, "0");
  // the time axis: the first, middle and last point's time
  const clock = (p) => {
    const d = new Date(p.created);
    const long = series.length > 1 && new Date(series[series.length - 1].created) - new Date(series[0].created) > 86400000;
    return isNaN(d) ? "" : (long ? d.toLocaleDateString([], { month: "short", day: "numeric" }) + " " : "")
      + d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  };
  if (series.length) {
    const axis = document.createElementNS(ns, "line");
    axis.setAttribute("x1", pad); axis.setAttribute("x2", width - pad);
    axis.setAttribute("y1", height - pad); axis.setAttribute("y2", height - pad);
    axis.setAttribute("class", "baseline");
    svg.append(axis);
    const middle = Math.floor((series.length - 1) / 2);
    text(pad, height - 6, clock(series[0]));
    text(x(middle), height - 6, clock(series[middle]), "middle");
    text(width - pad, height - 6, clock(series[series.length - 1]), "end");
    svg.setAttribute("data-axis", [0, middle, series.length - 1].map((i) => clock(series[i])).join("|"));
  }
  container.replaceChildren(svg);
}

pages.overview = () => {
  const counts = (summary) => {
    for (const state of [...STATES, "total"]) {
      const box = document.querySelector(`.count[data-state="${state}"] .n`);
      box.textContent = state === "total" ? summary.total || 0 : (summary.counts || summary)[state] || 0;
    }
  };
  const range = document.getElementById("range");
  let series = [];
  const loadChart = async () => {
    const seconds = Number(range.value);
    const start = new Date(Date.now() - seconds * 1000).toISOString();
    try {
      const reply = await api("GET", `/queue/history?start=${encodeURIComponent(start)}&buckets=60`);
      series = reply.data;
      drawChart(document.getElementById("chart"), series);
      if (series.length) counts(series[series.length - 1]);
    } catch (err) {
      document.getElementById("chart").textContent = err.code === 403 ? "no permission to see the history" : err.message;
    }
  };
  range.addEventListener("change", loadChart);
  loadChart();
  setInterval(loadChart, 30000);

  const rows = new Map();
  const table = tbody("live-jobs");
  const show = (event) => {
    const data = event.data || {};
    let row = rows.get(data._id);
    if (!row) {
      row = el("tr", { dataset: { job: data._id } }, el("td", { class: "number" }), el("td", { class: "name" }),
        el("td", { class: "state" }), el("td", { class: "event" }), el("td", { class: "at" }));
      rows.set(data._id, row);
      table.prepend(row);
      while (table.rows.length > 25) { rows.delete(table.lastChild.dataset.job); table.lastChild.remove(); }
    }
    row.querySelector(".number").textContent = data.number ?? "";
    row.querySelector(".name").replaceChildren(jobLink(data));
    row.querySelector(".state").textContent = data.state || "";
    row.querySelector(".state").dataset.state = data.state || "";
    row.querySelector(".event").textContent = event.name;
    row.querySelector(".at").textContent = when(event.created);
  };
  // what is queued now, before the stream brings changes (for users who may list jobs)
  (async () => {
    try {
      const reply = await api("GET", "/jobs?per_page=25&sort=number&descending=true");
      for (const job of reply.data.slice().reverse()) {
        if (!rows.has(job._id)) {
          show({ name: "", created: job.enqueued?.at,
                 data: { _id: job._id, number: job.number, name: job.name, state: job.state } });
        }
      }
    } catch (_) { /* no permission to list: the stream fills the table */ }
  })();
  subscribe(["queue"], (event) => {
    if (event.name === "summary") {
      counts(event.data);
      if (series.length) {
        series.push({ ...event.data.counts, created: event.created });
        series.shift();
        drawChart(document.getElementById("chart"), series);
      }
    } else if (event.channel === "queue") {
      show(event);
    }
  });
};

pages.jobs = () => {
  const form = document.getElementById("filters");
  const params = new URLSearchParams(location.search);
  for (const [key, value] of params) {
    const field = form.elements.namedItem(key);
    if (field && field.type === "checkbox") field.checked = value === "true";
    else if (field) field.value = value;
  }
  let page = Number(params.get("page") || 0);
  const load = async () => {
    const query = new URLSearchParams({ page, per_page: 25, sort: "number", descending: "true" });
    for (const key of ["state", "name"]) {
      const value = form.elements.namedItem(key).value;
      if (value) query.set(key, value);
    }
    if (form.elements.namedItem("finished").checked) query.set("finished", "true");
    try {
      const reply = await api("GET", "/jobs?" + query);
      fill("jobs-table", reply.data.map((job) => el("tr", { dataset: { job: job._id } },
        el("td", { text: job.number }), el("td", {}, jobLink(job)),
        el("td", { class: "state", text: job.state + (job.held ? " (held)" : ""), dataset: { state: job.state } }),
        el("td", { text: Math.round((job.progress?.value || 0) * 100) + "%" }),
        el("td", { text: when(job.enqueued?.at) }),
        el("td", { text: job.locked ? job.locked.worker : "" }))), "no jobs");
      // past api.count_limit the count stops: "10000+", and the pages go on
      const plus = reply.total_capped ? "+" : "";
      document.getElementById("page-info").textContent =
        `page ${reply.page + 1} of ${Math.max(1, reply.page_count)}${plus} (${reply.total_count}${plus} jobs)`;
      document.getElementById("prev").disabled = page <= 0;
      document.getElementById("next").disabled = reply.next_after === null;
    } catch (err) { flash(err.message); }
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); page = 0; load(); });
  document.getElementById("prev").addEventListener("click", () => { page = Math.max(0, page - 1); load(); });
  document.getElementById("next").addEventListener("click", () => { page += 1; load(); });
  load();
  subscribe(["queue"], debounce((event) => { if (event.name !== "summary") load(); }, 300));
};

// What a job's state allows (the state machine in monq/queue/states.py); the API's
// ``actions`` say what the user may do at all.
const WAITING = ["pending", "deferred", "failed"];
function actionsFor(job) {
  const granted = job.actions || [];
  let possible = [];
  if (WAITING.includes(job.state)) {
    possible = ["kill", "remove", "restart", job.held ? "resume" : "hold"];
  } else if (job.state === "running") {
    possible = job.killed_at || job.removed_at ? [] : ["kill", "remove"];
  } else if (["error", "inactive", "killed"].includes(job.state)) {
    possible = job.child_id ? [] : ["restart"];
  }
  return possible.filter((a) => granted.includes(a));
}

pages.job = () => {
  streaming = true;  // this page follows its job's channel
  const id = document.getElementById("job").dataset.job;
  let job = null;
  let worker = "";
  const render = () => {
    document.getElementById("job-title").textContent = `#${job.number} ${job.name}`;
    const state = document.getElementById("job-state");
    state.textContent = job.state + (job.held ? " (held)" : "");
    state.dataset.state = job.state;
    const value = Math.round((job.progress?.value || 0) * 100);
    document.getElementById("progress-bar").style.width = value + "%";
    document.getElementById("progress-message").textContent =
      `${value}%` + (job.progress?.message ? ` · ${job.progress.message}` : "");
    document.getElementById("job-args").textContent = JSON.stringify(job.args, null, 2);
    const fields = [["Priority", job.priority], ["Attempts left", `${job.attempts_left} of ${job.attempts}`],
      ["Enqueued", `${when(job.enqueued?.at)} by ${job.enqueued?.by || "?"}`], ["Started", when(job.started_at)],
      ["Finished", when(job.finished_at)], ["Worker", job.locked?.worker || worker],
      ["Result", job.result === null || job.result === undefined ? "" : JSON.stringify(job.result)]];
    document.getElementById("job-fields").replaceChildren(...fields.flatMap(([k, v]) =>
      [el("dt", { text: k }), el("dd", { text: v ?? "" })]));
    // a traceback keeps its lines
    const error = document.getElementById("job-error");
    error.textContent = job.last_error || "";
    error.hidden = !job.last_error;
    document.getElementById("job-error-title").hidden = !job.last_error;
    const actions = actionsFor(job);
    document.getElementById("actions").replaceChildren(...actions.map((action) =>
      el("button", { type: "button", class: "action " + action, dataset: { action }, text: action,
        onclick: async () => {
          try {
            const done = (await api("POST", `/jobs/${job._id}/${action}`)).data;
            if (done._id !== job._id) { location.href = `/jobs/${done._id}`; return; }
            job = { ...job, ...done }; render(); flash(`${action}: done`, "ok");
          } catch (err) { flash(err.message); }
        } })));
    if (!actions.length) {
      document.getElementById("actions").append(el("span", { class: "muted",
        text: (job.actions || []).length ? "no action in this state" : "" }));
    }
  };
  const loadEvents = async () => {
    const reply = await api("GET", `/jobs/${job._id}/events`);
    fill("job-events", reply.data.map((e) => el("tr", {}, el("td", { text: when(e.created) }),
      el("td", { text: e.name }), el("td", { text: e.data?.state || "" }), el("td", { text: e.author || "" }))));
    // the worker that last ran it, also once it has finished (its lock is gone then)
    const claims = reply.data.filter((e) => e.name === "request_start_job");
    if (claims.length) {
      const last = claims[claims.length - 1];
      worker = last.data?.worker || last.author || "";
      render();
    }
  };
  const follow = () => {
    const log = document.getElementById("job-log");
    const source = new EventSource(`/api/v1/jobs/${job._id}/log?follow=true`);
    source.onmessage = (m) => {
      const line = JSON.parse(m.data);
      log.append(`${when(line.created)} ${line.level} ${line.message}\n`);
    };
    source.addEventListener("end", () => source.close());
  };
  (async () => {
    try {
      job = (await api("GET", `/jobs/${id}`)).data;
    } catch (err) {
      // no skeleton of a job that is not there: the message and a way on
      for (const section of document.querySelectorAll("main section")) section.hidden = true;
      const missing = document.getElementById("missing");
      missing.querySelector(".message").textContent =
        err.code === 404 ? `There is no job ${id} (or you may not see it).` : err.message;
      missing.hidden = false;
      document.querySelector("main h1").textContent = err.code === 404 ? "Job not found" : "Job";
      subscribe([], () => {});  // the footer still tells whether the live connection works
      return;
    }
    render();
    loadEvents();
    follow();
    subscribe(["job:" + job._id], debounce(async () => {
      job = (await api("GET", `/jobs/${job._id}`)).data;
      render();
      loadEvents();
    }, 150));
  })();
};

pages.enqueue = () => {
  const select = document.getElementById("jobtype");
  const fieldset = document.getElementById("params");
  let types = [];
  const inputFor = (name, param) => {
    const kind = param.type;
    const attrs = { name: "arg:" + name, "data-kind": kind };
    if (param.required) attrs.required = "";
    if (param.choices && param.choices.length) {
      const choice = el("select", attrs, ...param.choices.map((c) => el("option", { value: c, text: c })));
      if (param.default !== null && param.default !== undefined) choice.value = param.default;
      return choice;
    }
    if (kind === "bool") {
      attrs.type = "checkbox";
      const box = el("input", attrs);
      box.checked = Boolean(param.default);
      return box;
    }
    attrs.type = kind === "int" || kind === "float" ? "number" : "text";
    if (kind === "float") attrs.step = "any";
    const input = el("input", attrs);
    if (param.default !== null && param.default !== undefined) {
      input.value = typeof param.default === "object" ? JSON.stringify(param.default) : param.default;
    }
    return input;
  };
  const show = () => {
    const type = types.find((t) => t.name === select.value);
    document.getElementById("jobtype-doc").textContent = type?.doc || "";
    fieldset.replaceChildren(el("legend", { text: "Arguments" }), ...Object.entries(type?.params || {}).map(
      ([name, param]) => el("label", {}, `${name}${param.required ? " *" : ""} `, inputFor(name, param),
        el("small", { class: "muted", text: param.description || "" }))));
  };
  select.addEventListener("change", show);
  (async () => {
    try { types = (await api("GET", "/jobtypes")).data; } catch (err) { flash(err.message); return; }
    select.replaceChildren(...types.map((t) => el("option", { value: t.name, text: t.name })));
    show();
  })();
  document.getElementById("enqueue-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const args = {};
    for (const input of form.querySelectorAll("[name^='arg:']")) {
      const name = input.name.slice(4), kind = input.dataset.kind;
      if (kind === "bool") { args[name] = input.checked; continue; }
      if (input.value === "") continue;
      if (kind === "int") args[name] = parseInt(input.value, 10);
      else if (kind === "float") args[name] = parseFloat(input.value);
      else if (kind === "list" || kind === "dict") {
        try { args[name] = JSON.parse(input.value); } catch (_) { flash(`${name}: not valid JSON`); return; }
      } else args[name] = input.value;
    }
    const body = { name: select.value, args, priority: parseInt(form.elements.namedItem("priority").value || "0", 10) };
    if (form.elements.namedItem("hold").checked) body.hold = true;
    try {
      const job = (await api("POST", "/jobs", body)).data;
      location.href = `/jobs/${job._id}`;
    } catch (err) { flash(err.message); }
  });
};

pages.workers = () => {
  const load = async () => {
    try {
      const reply = await api("GET", "/workers");
      fill("workers-table", reply.data.map((w) => el("tr", {}, el("td", { text: w._id }), el("td", { text: w.host }),
        el("td", { text: w.pool }), el("td", { text: (w.tags || []).join(", ") }),
        el("td", { text: (w.jobs || []).map((j) => "#" + j.number).join(" ") }),
        el("td", { text: `${w.heartbeat_age_s.toFixed(1)} s ago` }),
        el("td", { class: w.alive ? "ok" : "bad", text: w.alive ? "alive" : "dead" }))), "no workers");
    } catch (err) { flash(err.message); }
  };
  load();
  setInterval(load, 3000);
};

pages.schedules = () => {
  const load = async () => {
    try {
      const reply = await api("GET", "/schedules?per_page=200");
      fill("schedules-table", reply.data.map((s) => el("tr", { dataset: { schedule: s.name } },
        el("td", { text: s.name }),
        el("td", { text: s.job }), el("td", { text: s.cron }), el("td", { text: s.timezone || "UTC" }),
        // a disabled schedule has no next run
        el("td", { class: "next", text: s.enabled ? when(s.next_at) : "" }), el("td", { text: when(s.last_tick) }),
        el("td", { text: s.enabled ? "yes" : "no" }),
        el("td", {}, el("button", { type: "button", text: s.enabled ? "disable" : "enable", onclick: async () => {
          try { await api("PUT", `/schedules/${s._id}`, { etag: s.etag, enabled: !s.enabled }); load(); }
          catch (err) { flash(err.message); }
        } })))), "no schedules");
    } catch (err) { fill("schedules-table", [], err.message); }
  };
  const form = document.getElementById("schedule-form");
  (async () => {
    try {
      const types = (await api("GET", "/jobtypes")).data;
      document.getElementById("schedule-jobs").replaceChildren(
        ...types.map((t) => el("option", { value: t.name })));
    } catch (_) { /* no permission to list job types: type the name */ }
  })();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = form.elements;
    let args = {};
    const raw = f.namedItem("args").value.trim();
    if (raw) {
      try { args = JSON.parse(raw); } catch (_) { flash("arguments: not valid JSON"); return; }
    }
    const body = { name: f.namedItem("name").value, job: f.namedItem("job").value,
      cron: f.namedItem("cron").value, timezone: f.namedItem("timezone").value || "UTC", args,
      enabled: !f.namedItem("disabled").checked };
    try {
      await api("POST", "/schedules", body);
      form.reset();
      flash(`schedule ${body.name} added`, "ok");
      load();
    } catch (err) { flash(err.message); }
  });
  load();
};

pages.notifications = () => {
  const form = document.getElementById("filters");
  const load = async () => {
    const query = new URLSearchParams({ per_page: 100 });
    const state = form.elements.namedItem("state").value;
    if (state) query.set("state", state);
    try {
      const reply = await api("GET", "/notifications?" + query);
      fill("notifications-table", reply.data.map((n) => el("tr", {},
        el("td", {}, el("a", { href: `/jobs/${n.job_id}`, text: `#${n.number ?? ""} ${n.job_name || ""}` })),
        el("td", { text: n.transition }), el("td", { text: n.type }), el("td", { text: n.state }),
        el("td", { text: n.attempts }), el("td", { text: n.last_error || "" }),
        el("td", {}, el("button", { type: "button", text: "resend", onclick: async () => {
          try { await api("POST", `/notifications/${n._id}/resend`); flash("queued again", "ok"); load(); }
          catch (err) { flash(err.message); }
        } })))), "no notifications");
    } catch (err) { fill("notifications-table", [], err.message); }
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  load();
};

const BUILT_IN = ["admin", "standard_user"];

pages.users = () => {
  const list = (value) => value.split(",").map((s) => s.trim()).filter(Boolean);
  const load = async () => {
    try {
      const reply = await api("GET", "/roles?per_page=500");
      fill("users-table", reply.data.map((r) => el("tr", {}, el("td", { text: r.name }),
        el("td", { text: r.email ? "user" : "role" }), el("td", { text: r.email || "" }),
        el("td", { text: (r.role || []).join(", ") }), el("td", { text: (r.perm || []).join(", ") }),
        el("td", { text: r.is_active === false ? "no" : "yes" }),
        // the built-in admin user and roles, and oneself, are not to be deleted here
        el("td", {}, BUILT_IN.includes(r.name) || r.name === document.body.dataset.user ? null
          : el("button", { type: "button", class: "delete", text: "delete", onclick: async () => {
            if (!confirm(`Delete ${r.name}?`)) return;
            try { await api("DELETE", `/roles/${r._id}?etag=${encodeURIComponent(r.etag)}`); load(); }
            catch (err) { flash(err.message); }
          } })))));
    } catch (err) { flash(err.message); }
  };
  document.getElementById("user-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target.elements;
    const body = { name: f.namedItem("name").value, role: list(f.namedItem("role").value),
      perm: list(f.namedItem("perm").value) };
    if (f.namedItem("kind").value === "user") {
      body.email = f.namedItem("email").value;
      body.password = f.namedItem("password").value;
    }
    try { await api("POST", "/roles", body); e.target.reset(); flash("created", "ok"); load(); }
    catch (err) { flash(err.message); }
  });
  load();
};

pages.error = () => {};

document.addEventListener("DOMContentLoaded", () => {
  const logout = document.getElementById("logout");
  if (logout) {
    logout.addEventListener("click", async () => {
      try { await api("POST", "/logout"); } finally { location.href = "/login"; }
    });
  }
  const init = pages[document.body.dataset.page];
  if (init) init();
  // pages without a stream of their own still show whether the live connection
  // works (the footer would otherwise say "offline" while all is well)
  if (document.body.dataset.user && !streaming) subscribe([], () => {});
});
