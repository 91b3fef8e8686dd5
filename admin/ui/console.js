// The wsbridge operator console. Plain JavaScript, no build step: it calls
// the admin API (/v1) with the token kept in this tab's sessionStorage.
// Every value from the bridge (names, ids, headers, message bodies) goes
// into the page as text (textContent, attribute values), never as markup.
'use strict';

(() => {
  const TOKEN_KEY = 'wsbridge.admin.token';
  const HISTORY = 120; // samples kept for the sparklines (two minutes at 1/s)
  const STALE_MS = 3500; // no sample for this long: the data is stale
  const TRACE_SECONDS = 30; // a connection page renews its trace for this long...
  const TRACE_RENEW_MS = 10000; // ...this often, so it stops soon after the page is left

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    samples: [],
    lastSampleAt: 0,
    streamCtrl: null,
    streamGen: 0,
    about: null,
    nodes: null,
    pageTimers: [],
    render: null, // the current page's refresh on a new sample
  };

  // h builds an element: attrs sets properties and attributes; strings and
  // numbers among children become text nodes.
  function h(tag, attrs, ...children) {
    const el = tag.startsWith('svg:')
      ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
      : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'text') el.textContent = String(v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'value') el.value = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    append(el, children);
    return el;
  }
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }
  const $ = (id) => document.getElementById(id);

  class APIError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(method, path, body) {
    const opts = { method, headers: { Authorization: 'Bearer ' + state.token }, cache: 'no-store' };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, opts);
    } catch (e) {
      throw new APIError(0, 'unreachable', 'the bridge does not answer: ' + e.message);
    }
    let data = null;
    try { data = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) {
      const err = data && data.error ? data.error : { code: String(res.status), message: res.statusText };
      if (res.status === 401 && state.token) logout('The bridge refused the token.');
      throw new APIError(res.status, err.code, err.code + ': ' + err.message);
    }
    return data;
  }

  // ---- login ----

  function showLogin(message) {
    $('login').hidden = false;
    $('page').replaceChildren();
    $('nav').hidden = true;
    $('logout').hidden = true;
    $('live').hidden = true;
    $('login-error').textContent = message || '';
    $('token').focus();
  }

  function logout(message) {
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    stopStream();
    clearPageTimers();
    showLogin(message);
  }

  $('login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const token = $('token').value.trim();
    state.token = token;
    try {
      state.about = await api('GET', '/v1/about');
    } catch (e) {
      state.token = null;
      $('login-error').textContent = e.status === 401 ? 'Wrong token: the bridge refused it.' : e.message;
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token').value = '';
    started();
  });
  $('logout').addEventListener('click', () => logout('Logged out.'));

  function started() {
    $('login').hidden = true;
    $('nav').hidden = false;
    $('logout').hidden = false;
    $('live').hidden = false;
    startStream();
    route();
  }

  // ---- the live stream (GET /v1/stream, read with fetch: it needs the header) ----

  function stopStream() {
    state.streamGen++;
    if (state.streamCtrl) state.streamCtrl.abort();
    state.streamCtrl = null;
  }

  async function startStream() {
    stopStream();
    const gen = state.streamGen;
    let delay = 1000;
    while (state.token && gen === state.streamGen) {
      const ctrl = new AbortController();
      state.streamCtrl = ctrl;
      try {
        const res = await fetch('/v1/stream', { headers: { Authorization: 'Bearer ' + state.token }, signal: ctrl.signal, cache: 'no-store' });
        if (res.status === 401) { logout('The bridge refused the token.'); return; }
        if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
        const reader = res.body.getReader();
        const dec = new TextDecoder();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            onEvent(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
          if (buf.length > 4 << 20) throw new Error('event too large'); // bounded, whatever the server sends
          delay = 1000;
        }
      } catch (e) { /* dropped: reconnect below */ }
      if (gen !== state.streamGen) return;
      updateLive();
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  }

  function onEvent(block) {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (event !== 'sample' || data.length === 0) return;
    let s;
    try { s = JSON.parse(data.join('\n')); } catch (e) { return; }
    state.samples.push(s);
    if (state.samples.length > HISTORY) state.samples.shift();
    state.lastSampleAt = Date.now();
    updateLive();
    if (state.render) state.render();
  }

  function isStale() { return Date.now() - state.lastSampleAt > STALE_MS; }

  function updateLive() {
    const el = $('live');
    if (!state.lastSampleAt) { el.dataset.state = 'off'; el.textContent = 'connecting…'; return; }
    if (isStale()) {
      el.dataset.state = 'stale';
      el.textContent = 'stale since ' + clock(state.lastSampleAt);
    } else {
      el.dataset.state = 'live';
      el.textContent = 'live';
    }
  }
  setInterval(updateLive, 1000);

  // ---- metrics of the samples ----

  function matches(labels, want) {
    for (const [k, v] of Object.entries(want || {})) if (labels[k] !== v) return false;
    return true;
  }
  // value sums the series of name whose labels include want.
  function value(sample, name, want) {
    let sum = 0; let found = false;
    for (const [n, labels, v] of sample.series) {
      if (n === name && matches(labels, want)) { sum += v; found = true; }
    }
    return found ? sum : null;
  }
  // series lists the label sets and values of name in a sample.
  function seriesOf(sample, name) {
    return sample.series.filter(([n]) => n === name).map(([, labels, v]) => ({ labels, v }));
  }
  // rates is name's per-second rate between consecutive samples.
  function rates(name, want) {
    const out = [];
    for (let i = 1; i < state.samples.length; i++) {
      const a = state.samples[i - 1]; const b = state.samples[i];
      const va = value(a, name, want); const vb = value(b, name, want);
      const dt = (b.t - a.t) / 1000;
      out.push(va === null || vb === null || dt <= 0 ? 0 : Math.max(0, vb - va) / dt);
    }
    return out;
  }
  function sumRates(list) {
    const n = Math.max(0, ...list.map((l) => l.length));
    const out = new Array(n).fill(0);
    for (const l of list) l.forEach((v, i) => { out[i + n - l.length] += v; });
    return out;
  }
  function gauges(name, want) { return state.samples.map((s) => value(s, name, want) || 0); }
  // meanLatency is a histogram's mean per interval, in milliseconds.
  function meanLatency(name) {
    const out = [];
    for (let i = 1; i < state.samples.length; i++) {
      const a = state.samples[i - 1]; const b = state.samples[i];
      const dc = (value(b, name + '_count') || 0) - (value(a, name + '_count') || 0);
      const ds = (value(b, name + '_sum') || 0) - (value(a, name + '_sum') || 0);
      out.push(dc > 0 ? (ds / dc) * 1000 : 0);
    }
    return out;
  }

  // ---- widgets ----

  function fmt(n, digits) {
    if (n === null || n === undefined || Number.isNaN(n)) return '–';
    if (Math.abs(n) >= 1e9) return (n / 1e9).toFixed(1) + 'G';
    if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(1) + 'M';
    if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + 'k';
    return Number.isInteger(n) ? String(n) : n.toFixed(digits === undefined ? 1 : digits);
  }
  function clock(ms) { return new Date(ms).toLocaleTimeString(); }
  function stamp(iso) {
    const d = new Date(iso);
    return d.toLocaleTimeString() + '.' + String(d.getMilliseconds()).padStart(3, '0');
  }
  function duration(seconds) {
    const s = Math.floor(seconds); const d = Math.floor(s / 86400); const hh = Math.floor(s % 86400 / 3600);
    const m = Math.floor(s % 3600 / 60);
    return (d ? d + 'd ' : '') + (d || hh ? hh + 'h ' : '') + m + 'm ' + (s % 60) + 's';
  }

  function sparkline(values, bad) {
    const w = 200; const hgt = 36;
    const svg = h('svg:svg', { class: bad ? 'spark bad' : 'spark', viewBox: `0 0 ${w} ${hgt}`, preserveAspectRatio: 'none', role: 'img' });
    if (values.length < 2) return svg;
    const max = Math.max(...values, 1e-9);
    const step = w / (Math.max(values.length, 30) - 1); // a short history fills the left part
    const x0 = 0;
    const pts = values.map((v, i) => `${(x0 + i * step).toFixed(1)},${(hgt - 2 - (v / max) * (hgt - 4)).toFixed(1)}`);
    svg.append(h('svg:polyline', { points: pts.join(' ') }));
    return svg;
  }

  function metricCard(label, values, unit, opts) {
    const o = opts || {};
    const last = values.length ? values[values.length - 1] : null;
    return h('div', { class: 'card metric', dataset: { metric: o.id || label } },
      h('div', { class: 'label', text: label }),
      h('div', null, h('span', { class: 'value', text: fmt(last, o.digits) }), h('span', { class: 'unit', text: unit || '' })),
      sparkline(values, o.bad));
  }

  function table(headers, rows, empty) {
    if (!rows.length) return h('p', { class: 'muted', text: empty || 'none' });
    return h('table', null,
      h('thead', null, h('tr', null, headers.map((c) => h('th', { class: c.num ? 'num' : null, text: c.label || c })))),
      h('tbody', null, rows.map((r) => h('tr', null, r.map((cell, i) => {
        const num = headers[i] && headers[i].num;
        return cell instanceof Node ? h('td', { class: num ? 'num' : null }, cell) : h('td', { class: num ? 'num' : 'wrap', text: cell });
      })))));
  }

  function card(title, ...body) { return h('div', { class: 'card' }, h('h2', { text: title }), body); }
  function link(href, text) { return h('a', { href, text }); }
  function connLink(fd) { return link('#/connection/' + fd, String(fd)); }
  function resultLine() { return h('p', { class: 'result', role: 'status' }); }
  function showResult(el, ok, text) { el.className = 'result ' + (ok ? 'ok' : 'error'); el.textContent = text; }

  // ---- pages ----

  function clearPageTimers() {
    for (const t of state.pageTimers) clearInterval(t);
    state.pageTimers = [];
    state.render = null;
  }
  function every(ms, f) { f(); state.pageTimers.push(setInterval(f, ms)); }

  function route() {
    if (!state.token) { showLogin(); return; }
    clearPageTimers();
    const hash = location.hash.replace(/^#/, '') || '/';
    const parts = hash.split('/').slice(1);
    const page = $('page');
    page.replaceChildren();
    let current = parts[0] || 'overview';
    if (current === 'connection') current = 'connections';
    if (current === 'group') current = 'groups';
    for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('current', a.dataset.page === current);
    switch (parts[0] || '') {
      case '': overviewPage(page); break;
      case 'connections': connectionsPage(page); break;
      case 'connection': connectionPage(page, decodeURIComponent(parts[1] || '')); break;
      case 'groups': groupsPage(page); break;
      case 'group': groupPage(page, decodeURIComponent(parts.slice(1).join('/'))); break;
      case 'users': usersPage(page, parts.length > 1 ? decodeURIComponent(parts.slice(1).join('/')) : ''); break;
      case 'actions': actionsPage(page); break;
      default: append(page, [h('h1', { text: 'No such page' })]);
    }
  }
  window.addEventListener('hashchange', route);

  // Overview: live numbers from the stream, build, nodes and settings.
  function overviewPage(page) {
    const live = h('div');
    const nodes = h('div');
    const about = h('div');
    append(page, [h('h1', { text: 'Overview' }), live, nodes, about]);
    state.render = () => renderLive(live);
    state.render();
    every(5000, async () => {
      try {
        const [n, a] = await Promise.all([api('GET', '/v1/nodes'), api('GET', '/v1/about')]);
        state.about = a;
        nodes.replaceChildren(nodesCard(n));
        about.replaceChildren(aboutCards(a));
      } catch (e) { nodes.replaceChildren(card('Nodes', h('p', { class: 'error', text: e.message }))); }
    });
  }

  function renderLive(el) {
    const last = state.samples[state.samples.length - 1];
    if (!last) { el.replaceChildren(h('p', { class: 'muted', text: 'Waiting for the live stream…' })); return; }
    const drops = sumRates([
      rates('wsbridge_pushes_total', { result: 'queue_full' }),
      rates('wsbridge_events_dropped_total'),
      rates('wsbridge_client_messages_refused_total'),
    ]);
    const note = isStale() ? h('p', { class: 'stale-note', text: 'The live stream is down: these numbers are from ' + clock(state.lastSampleAt) + '. Reconnecting…' }) : null;
    const workers = seriesOf(last, 'wsbridge_worker_connections').sort((a, b) => Number(a.labels.worker) - Number(b.labels.worker));
    const maxW = Math.max(1, ...workers.map((w) => w.v));
    el.replaceChildren(
      note || '',
      h('div', { class: 'grid' },
        metricCard('Connections', gauges('wsbridge_connections'), '', { id: 'connections' }),
        metricCard('Connects', rates('wsbridge_connections_opened_total'), '/s', { id: 'connects' }),
        metricCard('Pushes queued', rates('wsbridge_pushes_total', { result: 'queued' }), '/s', { id: 'pushes' }),
        metricCard('Messages in', rates('wsbridge_messages_received_total'), '/s', { id: 'messages_in' }),
        metricCard('Events to PHP', rates('wsbridge_events_delivered_total'), '/s', { id: 'events' }),
        metricCard('Drops', drops, '/s', { id: 'drops', bad: true }),
        metricCard('Event delivery latency (mean)', meanLatency('wsbridge_events_request_duration_seconds'), 'ms', { id: 'event_latency', digits: 2 }),
        metricCard('Queued bytes', gauges('wsbridge_send_queue_bytes'), 'B', { id: 'queued_bytes' }),
      ),
      h('div', { class: 'grid' },
        card('Connections per worker',
          h('div', { class: 'bars' }, workers.map((w) => { const s = h('span', { title: 'worker ' + w.labels.worker + ': ' + w.v }); s.style.height = Math.round(100 * w.v / maxW) + '%'; return s; })),
          table([{ label: 'worker' }, { label: 'connections', num: true }], workers.map((w) => [w.labels.worker, fmt(w.v)]))),
        card('Drops by reason', dropsTable(last)),
        card('RPC calls', rpcTable(last)),
      ),
    );
  }

  function dropsTable(last) {
    const rows = [];
    const add = (what, name, label, want) => {
      for (const s of seriesOf(last, name)) {
        if (!matches(s.labels, want) || s.v === 0) continue;
        const r = rates(name, Object.assign({}, want, { [label]: s.labels[label] }));
        rows.push([what, s.labels[label], fmt(s.v), fmt(r.length ? r[r.length - 1] : 0, 2)]);
      }
    };
    add('push', 'wsbridge_pushes_total', 'result', {});
    rows.splice(0, rows.length, ...rows.filter((r) => r[1] !== 'queued'));
    add('event to PHP', 'wsbridge_events_dropped_total', 'reason');
    add('client message', 'wsbridge_client_messages_refused_total', 'reason');
    add('handshake', 'wsbridge_handshakes_refused_total', 'reason');
    add('fragment', 'wsbridge_fragment_aborts_total', 'reason');
    return table(['what', 'reason', { label: 'total', num: true }, { label: 'now /s', num: true }], rows, 'Nothing dropped.');
  }

  function rpcTable(last) {
    const rows = seriesOf(last, 'wsbridge_rpc_calls_total').filter((s) => s.v > 0)
      .sort((a, b) => (a.labels.method + a.labels.outcome).localeCompare(b.labels.method + b.labels.outcome))
      .map((s) => {
        const r = rates('wsbridge_rpc_calls_total', s.labels);
        return [s.labels.method, s.labels.outcome, fmt(s.v), fmt(r.length ? r[r.length - 1] : 0, 2)];
      });
    return table(['method', 'outcome', { label: 'total', num: true }, { label: 'now /s', num: true }], rows, 'No RPC call yet.');
  }

  function nodesCard(n) {
    const rows = n.nodes.map((x) => [String(x.id), x.address || '–', x.hostname || '–', fmt(x.connections),
      n.cluster ? fmt(x.heartbeat_age_ms) + ' ms' : '–', [x.self ? 'this node' : '', x.expired ? 'expired' : ''].filter(Boolean).join(', ')]);
    return card(n.cluster ? 'Nodes (cluster)' : 'Nodes (standalone)',
      table(['id', 'address', 'host', { label: 'connections', num: true }, 'heartbeat', ''], rows));
  }

  function aboutCards(a) {
    const b = a.build;
    const settings = a.settings.map((s) => [s.env, s.value === '' ? '(empty)' : s.value, s.default ? 'default' : 'set']);
    return h('div', null,
      card('Build and uptime', table(['', ''], [
        ['version', b.version], ['revision', (b.revision || '–') + (b.modified ? ' (modified)' : '')],
        ['Go', b.go_version], ['node', String(a.node_id)], ['started', new Date(a.started).toLocaleString()],
        ['uptime', duration(a.uptime_seconds)], ['stream viewers', String(a.stream.viewers)],
        ['traced connections', a.traced.length ? a.traced.join(', ') : 'none'],
      ])),
      h('details', { class: 'card' }, h('summary', { text: 'Settings in effect (' + settings.length + ', secrets masked)' }),
        table(['variable', 'value', ''], settings)));
  }

  // Connections: a page of the table, filtered by group and user on the
  // server and by remote address and path here.
  function connectionsPage(page) {
    const f = { group: h('input', { name: 'group', placeholder: 'any' }), user: h('input', { name: 'user', placeholder: 'any' }),
      remote: h('input', { name: 'remote', placeholder: 'contains' }), path: h('input', { name: 'path', placeholder: 'contains' }) };
    const body = h('div');
    const pager = h('div');
    let after = 0; const prev = [];
    const load = async () => {
      const q = new URLSearchParams({ limit: '100' });
      if (after) q.set('after', String(after));
      if (f.group.value) q.set('group', f.group.value);
      if (f.user.value) q.set('user', f.user.value);
      let list;
      try { list = await api('GET', '/v1/connections?' + q); } catch (e) { body.replaceChildren(h('p', { class: 'error', text: e.message })); return; }
      const rows = list.connections
        .filter((c) => c.remote_addr.includes(f.remote.value) && c.path.includes(f.path.value))
        .map((c) => [connLink(c.fd), c.remote_addr, c.path, String(c.worker), c.user || '–',
          h('span', null, c.groups.map((g) => h('a', { class: 'tag', href: '#/group/' + encodeURIComponent(g), text: g }))),
          new Date(c.connected_at * 1000).toLocaleTimeString()]);
      body.replaceChildren(table(['fd', 'remote address', 'path', 'worker', 'user', 'groups', 'connected'], rows, 'No connection.'));
      pager.replaceChildren(
        prev.length ? h('button', { class: 'plain', type: 'button', text: '← Previous', onclick: () => { after = prev.pop(); load(); } }) : '',
        ' ',
        list.next_after !== null ? h('button', { class: 'plain', type: 'button', text: 'Next →', onclick: () => { prev.push(after); after = list.next_after; load(); } }) : '');
    };
    const form = h('form', { class: 'inline', onsubmit: (ev) => { ev.preventDefault(); after = 0; prev.length = 0; load(); } },
      h('label', null, 'Group', f.group), h('label', null, 'User', f.user), h('label', null, 'Remote address', f.remote),
      h('label', null, 'Path', f.path), h('button', { type: 'submit', text: 'Filter' }));
    append(page, [h('h1', { text: 'Connections' }), card('Filter', form), h('div', { class: 'card' }, body, pager)]);
    load();
  }

  function pushForm(label, send) {
    const data = h('textarea', { name: 'data', placeholder: 'message' });
    const enc = h('select', { name: 'encoding' }, h('option', { value: '', text: 'text' }), h('option', { value: 'base64', text: 'binary (base64)' }));
    const out = resultLine();
    const form = h('form', { class: 'inline', onsubmit: async (ev) => {
      ev.preventDefault();
      const body = { data: data.value };
      if (enc.value) { body.encoding = 'base64'; body.opcode = 2; }
      try { showResult(out, true, await send(body)); } catch (e) { showResult(out, false, e.message); }
    } }, h('label', null, 'Message', data), h('label', null, 'As', enc), h('button', { type: 'submit', text: label }));
    return [form, out];
  }

  function disconnectForm(fdInput) {
    const code = h('input', { name: 'code', type: 'number', value: '1000', min: '1000', max: '4999' });
    const reason = h('input', { name: 'reason', placeholder: 'reason' });
    const out = resultLine();
    const form = h('form', { class: 'inline', onsubmit: async (ev) => {
      ev.preventDefault();
      const fd = typeof fdInput === 'string' ? fdInput : fdInput.value;
      try {
        const r = await api('POST', '/v1/connections/' + encodeURIComponent(fd) + '/disconnect', { code: Number(code.value), reason: reason.value });
        showResult(out, r.disconnected, r.disconnected ? 'Disconnected fd ' + fd + '.' : 'fd ' + fd + ' was not open.');
      } catch (e) { showResult(out, false, e.message); }
    } }, typeof fdInput === 'string' ? '' : h('label', null, 'fd', fdInput), h('label', null, 'Close code', code), h('label', null, 'Reason', reason),
    h('button', { class: 'danger', type: 'submit', text: 'Disconnect' }));
    return [form, out];
  }

  // One connection: its handshake, groups, user, queue, bytes and trace.
  function connectionPage(page, fdText) {
    const fd = fdText;
    const info = h('div');
    const stats = h('div');
    const trace = h('div');
    const traceNote = h('p', { class: 'muted' });
    append(page, [h('h1', { text: 'Connection ' + fd }), info,
      h('div', { class: 'grid' },
        card('Push to this connection', pushForm('Push', async (b) => {
          const r = await api('POST', '/v1/connections/' + encodeURIComponent(fd) + '/push', b);
          return r.queued ? 'Queued for fd ' + fd + '.' : 'Not queued: fd ' + fd + ' is not open or its queue is full.';
        })),
        card('Disconnect', disconnectForm(fd))),
      h('div', { class: 'card' }, h('h2', { text: 'Trace' }), traceNote, stats, trace)]);
    (async () => {
      try {
        const c = await api('GET', '/v1/connections/' + encodeURIComponent(fd));
        const kv = (obj) => Object.keys(obj).sort().flatMap((k) => obj[k].map((v) => [k, v]));
        info.replaceChildren(h('div', { class: 'grid' },
          card('Connection', table(['', ''], [['fd', String(c.fd)], ['remote address', c.remote_addr], ['path', c.path],
            ['subprotocol', c.subprotocol || '–'], ['worker', String(c.worker)], ['connected', new Date(c.connected_at * 1000).toLocaleString()],
            ['user', c.user ? link('#/users/' + encodeURIComponent(c.user), c.user) : '–'],
            ['groups', c.groups.length ? h('span', null, c.groups.map((g) => h('a', { class: 'tag', href: '#/group/' + encodeURIComponent(g), text: g }))) : '–']])),
          card('Handshake query', table(['name', 'value'], kv(c.query), 'No query.')),
          card('Handshake headers', table(['name', 'value'], kv(c.headers), 'No headers kept.'))));
      } catch (e) {
        info.replaceChildren(card('Connection', h('p', { class: 'error', text: e.message })));
      }
    })();
    const renew = async () => {
      try {
        const r = await api('POST', '/v1/connections/' + encodeURIComponent(fd) + '/trace', { seconds: TRACE_SECONDS });
        traceNote.textContent = 'Recording while this page is open (renewed until ' + clock(Date.parse(r.until)) + ').';
      } catch (e) { traceNote.textContent = 'Trace not renewed: ' + e.message; }
    };
    const poll = async () => {
      let t;
      try { t = await api('GET', '/v1/connections/' + encodeURIComponent(fd) + '/trace'); } catch (e) { return; }
      const c = t.connection;
      stats.replaceChildren(table(['queued', 'queued bytes', 'held', 'bytes in', 'bytes out'],
        [c ? [fmt(c.queued), fmt(c.queued_bytes), fmt(c.held), fmt(c.bytes_in), fmt(c.bytes_out)] : ['closed', '', '', '', '']]));
      const rows = (list) => list.slice().reverse().map((e) => [stamp(e.at), opName(e.opcode) + (e.finish ? '' : ' (fragment)'), fmt(e.size),
        (e.outcome || '') + (e.broadcast ? ' (to many)' : ''), h('span', { class: 'preview', text: e.preview + (e.truncated ? '…' : '') })]);
      const cols = ['time', 'opcode', { label: 'bytes', num: true }, 'outcome', 'payload'];
      trace.replaceChildren(
        t.closed ? h('p', { class: 'error', text: 'Closed at ' + stamp(t.closed.at) + ': ' + t.closed.outcome }) : '',
        h('h2', { text: 'Pushes (' + t.pushes.length + (t.lost.pushes ? ', ' + t.lost.pushes + ' older not kept' : '') + ')' }),
        h('div', { dataset: { trace: 'pushes' } }, table(cols, rows(t.pushes), 'No push yet.')),
        h('h2', { text: 'Frames out (' + t.out.length + ')' }),
        h('div', { dataset: { trace: 'out' } }, table(cols, rows(t.out), 'No frame written yet.')),
        h('h2', { text: 'Frames in (' + t.in.length + ')' }),
        h('div', { dataset: { trace: 'in' } }, table(cols, rows(t.in), 'No message received yet.')));
    };
    renew().then(poll);
    state.pageTimers.push(setInterval(renew, TRACE_RENEW_MS));
    state.pageTimers.push(setInterval(poll, 1000));
  }

  function opName(op) { return { 0: 'continuation', 1: 'text', 2: 'binary', 8: 'close', 9: 'ping', 10: 'pong' }[op] || String(op); }

  function groupsPage(page) {
    const body = h('div');
    append(page, [h('h1', { text: 'Groups' }), h('div', { class: 'card' }, body)]);
    every(5000, async () => {
      try {
        const g = await api('GET', '/v1/groups');
        body.replaceChildren(table(['group', { label: 'members', num: true }],
          g.groups.map((x) => [link('#/group/' + encodeURIComponent(x.name), x.name), fmt(x.members)]), 'No group has members.'));
      } catch (e) { body.replaceChildren(h('p', { class: 'error', text: e.message })); }
    });
  }

  function groupPage(page, name) {
    const members = h('div');
    append(page, [h('h1', null, 'Group ', h('span', { class: 'tag', text: name })),
      card('Members', members),
      card('Push to the group', pushForm('Push to group', async (b) => {
        const r = await api('POST', '/v1/groups/' + encodeURIComponent(name) + '/push', b);
        return 'Accepted by ' + r.accepted + ' connection(s).';
      }))]);
    every(5000, async () => {
      try {
        const g = await api('GET', '/v1/groups/' + encodeURIComponent(name));
        members.replaceChildren(h('p', null, g.members.length + ' member(s): '), h('p', null, g.members.map((fd) => [connLink(fd), ' '])));
      } catch (e) { members.replaceChildren(h('p', { class: 'error', text: e.message })); }
    });
  }

  function usersPage(page, user) {
    const input = h('input', { name: 'user', value: user, placeholder: 'user id' });
    const result = h('div');
    const form = h('form', { class: 'inline', onsubmit: (ev) => { ev.preventDefault(); location.hash = '#/users/' + encodeURIComponent(input.value); } },
      h('label', null, 'User id', input), h('button', { type: 'submit', text: 'Look up' }));
    append(page, [h('h1', { text: 'Users' }), card('Look up a user', form), result]);
    if (!user) return;
    append(result, [card('Push to this user', pushForm('Push to user', async (b) => {
      const r = await api('POST', '/v1/users/' + encodeURIComponent(user) + '/push', b);
      return 'Accepted by ' + r.accepted + ' connection(s).';
    }))]);
    const fds = h('div');
    result.prepend(card('Connections of ' + user, fds));
    every(5000, async () => {
      try {
        const u = await api('GET', '/v1/users/' + encodeURIComponent(user));
        fds.replaceChildren(u.fds.length ? h('p', null, u.fds.map((fd) => [connLink(fd), ' '])) : h('p', { class: 'muted', text: 'No connection is bound to this user.' }));
      } catch (e) { fds.replaceChildren(h('p', { class: 'error', text: e.message })); }
    });
  }

  function actionsPage(page) {
    const fd = h('input', { name: 'fd', placeholder: 'fd', inputmode: 'numeric' });
    const group = h('input', { name: 'group', placeholder: 'group' });
    const user = h('input', { name: 'user', placeholder: 'user id' });
    const dfd = h('input', { name: 'fd', placeholder: 'fd', inputmode: 'numeric' });
    const target = (input, label) => h('label', null, label, input);
    append(page, [h('h1', { text: 'Actions' }),
      h('div', { class: 'card', dataset: { action: 'fd' } }, h('h2', { text: 'Push to a connection' }), target(fd, 'fd'), pushForm('Push', async (b) => {
        const r = await api('POST', '/v1/connections/' + encodeURIComponent(fd.value) + '/push', b);
        return r.queued ? 'Queued for fd ' + fd.value + '.' : 'Not queued: fd ' + fd.value + ' is not open or its queue is full.';
      })),
      h('div', { class: 'card', dataset: { action: 'group' } }, h('h2', { text: 'Push to a group' }), target(group, 'Group'), pushForm('Push to group', async (b) => {
        const r = await api('POST', '/v1/groups/' + encodeURIComponent(group.value) + '/push', b);
        return 'Accepted by ' + r.accepted + ' connection(s).';
      })),
      h('div', { class: 'card', dataset: { action: 'user' } }, h('h2', { text: 'Push to a user' }), target(user, 'User id'), pushForm('Push to user', async (b) => {
        const r = await api('POST', '/v1/users/' + encodeURIComponent(user.value) + '/push', b);
        return 'Accepted by ' + r.accepted + ' connection(s).';
      })),
      h('div', { class: 'card', dataset: { action: 'everyone' } }, h('h2', { text: 'Push to everyone' }), pushForm('Broadcast', async (b) => {
        const r = await api('POST', '/v1/broadcast', b);
        return 'Accepted by ' + r.accepted + ' connection(s)' + (r.unanswered_nodes ? '; ' + r.unanswered_nodes + ' node(s) did not answer' : '') + '.';
      })),
      h('div', { class: 'card', dataset: { action: 'disconnect' } }, h('h2', { text: 'Disconnect a connection' }), disconnectForm(dfd))]);
  }

  if (state.token) started(); else showLogin();
})();
