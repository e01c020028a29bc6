// Ration operator dashboard: a single-page app in plain JavaScript (no framework, no build step).
//
// It signs in with Management API client credentials (POST ../oauth/token), keeps only the access
// token in sessionStorage and calls the Management API (../api/v2/) with it. Every piece of data is
// put into the page with textContent or attributes, never as HTML. Views are chosen by the URL
// hash: #/apps, #/apps/<client_id>, #/orgs, #/orgs/<id>, #/events.
'use strict';

(function () {
  const STORE_KEY = 'ration.dashboard.session';
  const MGMT = '../api/v2/';
  const BUCKETS = ['per_minute', 'per_hour', 'per_day'];
  const BUCKET_LABEL = { per_minute: 'Per minute', per_hour: 'Per hour', per_day: 'Per day' };
  const MAX_QUOTA = 2147483647;
  const PAGE = 100; // the Management API's largest page
  const MAX_LOG_PAGES = 50; // per event type: at most 5000 events drawn in a chart
  const EVENTS_REFRESH_MS = 5000;
  const EVENT_LABEL = {
    seccft: 'Token issued',
    feccft: 'Token refused',
    sapi: 'Management API change',
    token_quota_consumption_warning: 'Quota warning',
    quota_store_unavailable: 'Quota store unavailable',
  };

  const main = document.getElementById('main');
  const statusLine = document.getElementById('status');
  let renderSeq = 0; // bumped by every render; async work of an older render is dropped
  let timer = null; // auto-refresh of the current view

  // ---------------------------------------------------------------- DOM helpers

  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function append(node, kids) {
    for (const k of kids.flat(Infinity)) {
      if (k !== null && k !== undefined && k !== false) node.append(k instanceof Node ? k : String(k));
    }
  }

  /** An HTML element: el('a', {href: '#/apps'}, 'text', childNode, ...). */
  function el(tag, attrs, ...kids) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, kids);
    return node;
  }

  /** An SVG element, same calling convention as el(). */
  function svg(tag, attrs, ...kids) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    setAttrs(node, attrs);
    append(node, kids);
    return node;
  }

  const enc = encodeURIComponent;
  const num = (n) => Number(n).toLocaleString('en-US');
  const plural = (n, one, many) => `${num(n)} ${n === 1 ? one : many}`;

  function say(text, kind) {
    statusLine.textContent = text;
    statusLine.className = kind || '';
  }

  function clock(date, withDay) {
    const opts = { hour: '2-digit', minute: '2-digit', hour12: false };
    if (withDay) opts.weekday = 'short';
    return date.toLocaleTimeString('en-GB', opts);
  }

  function duration(secs) {
    if (secs < 60) return `${secs} s`;
    const mins = Math.round(secs / 60);
    if (mins < 60) return `${mins} min`;
    const h = Math.floor(mins / 60);
    return mins % 60 ? `${h} h ${mins % 60} min` : `${h} h`;
  }

  // ---------------------------------------------------------------- session and API

  function session() {
    try {
      const s = JSON.parse(sessionStorage.getItem(STORE_KEY) || 'null');
      if (s && s.access_token && s.expires_at > Date.now()) return s;
    } catch (_) { /* unreadable: treat as signed out */ }
    sessionStorage.removeItem(STORE_KEY);
    return null;
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function readBody(res) {
    const text = await res.text();
    if (!text) return null;
    try { return JSON.parse(text); } catch (_) { return text; }
  }

  function errorText(res, data) {
    if (data && typeof data === 'object') {
      return data.message || data.error_description || data.error || `HTTP ${res.status}`;
    }
    return `HTTP ${res.status} ${res.statusText}`.trim();
  }

  /** Exchanges client credentials for a Management API token; the secret is not kept. */
  async function signIn(clientId, clientSecret) {
    const disco = await fetch('../.well-known/openid-configuration', { cache: 'no-store' });
    if (!disco.ok) throw new Error(`cannot read the server's discovery document (HTTP ${disco.status})`);
    const { issuer } = await disco.json();
    const res = await fetch('../oauth/token', {
      method: 'POST',
      cache: 'no-store',
      credentials: 'omit',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({
        grant_type: 'client_credentials',
        client_id: clientId,
        client_secret: clientSecret,
        audience: `${issuer}api/v2/`,
      }),
    });
    const data = await readBody(res);
    if (res.status === 401) throw new Error('wrong client ID or secret');
    if (!res.ok) throw new Error(errorText(res, data));
    const lifetime = Math.max(60, Number(data.expires_in) || 3600) - 30;
    sessionStorage.setItem(STORE_KEY, JSON.stringify({
      access_token: data.access_token,
      expires_at: Date.now() + lifetime * 1000,
      client_id: clientId,
    }));
  }

  function signOut(message) {
    sessionStorage.removeItem(STORE_KEY);
    say(message || 'Signed out.');
    render(true);
  }

  /** Calls the Management API; resolves to the parsed body, rejects with an ApiError. */
  async function api(method, path, body) {
    const s = session();
    if (!s) {
      signOut('Your session has ended; sign in again.');
      throw new ApiError(401, 'not signed in');
    }
    const headers = { Authorization: `Bearer ${s.access_token}`, Accept: 'application/json' };
    const init = { method, headers, cache: 'no-store', credentials: 'omit' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(MGMT + path, init);
    const data = await readBody(res);
    if (res.status === 401) {
      signOut('Your session has expired; sign in again.');
      throw new ApiError(401, errorText(res, data));
    }
    if (!res.ok) throw new ApiError(res.status, errorText(res, data));
    return data;
  }

  /** Every item of a paged list (`include_totals` shape). */
  async function listAll(path, key) {
    const out = [];
    for (let page = 0; page < 1000; page++) {
      const body = await api('GET', `${path}?per_page=${PAGE}&page=${page}&include_totals=true`);
      const items = (body && body[key]) || [];
      out.push(...items);
      if (items.length < PAGE || out.length >= body.total) break;
    }
    return out;
  }

  /** Maps with at most `limit` requests in flight; a failed item becomes {error}. */
  async function mapLimit(items, limit, fn) {
    const out = new Array(items.length);
    let next = 0;
    async function worker() {
      while (next < items.length) {
        const i = next++;
        try { out[i] = await fn(items[i]); } catch (error) { out[i] = { error }; }
      }
    }
    await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
    return out;
  }

  // ---------------------------------------------------------------- shared widgets

  function confirmDialog(title, text, okLabel) {
    const dialog = document.getElementById('confirm');
    const ok = document.getElementById('confirm-ok');
    const cancel = document.getElementById('confirm-cancel');
    document.getElementById('confirm-title').textContent = title;
    document.getElementById('confirm-text').textContent = text;
    ok.textContent = okLabel;
    return new Promise((resolve) => {
      const yes = () => dialog.close('ok');
      const no = () => dialog.close('cancel');
      dialog.addEventListener('close', () => {
        ok.removeEventListener('click', yes);
        cancel.removeEventListener('click', no);
        resolve(dialog.returnValue === 'ok');
      }, { once: true });
      ok.addEventListener('click', yes);
      cancel.addEventListener('click', no);
      dialog.returnValue = '';
      dialog.showModal();
      cancel.focus(); // the safe choice is the default one
    });
  }

  function viewHead(id, title, ...extra) {
    return el('div', { class: 'view-head' }, el('h1', { id, tabindex: '-1' }, title), ...extra);
  }

  function refreshButton() {
    return el('button', { type: 'button', onclick: () => render(false) }, 'Refresh');
  }

  const isPaused = (client) => !(client.grant_types || []).includes('client_credentials');

  function statusBadge(client) {
    return isPaused(client)
      ? el('span', { class: 'badge paused' }, 'Paused')
      : el('span', { class: 'badge active' }, 'Active');
  }

  function usageRow(b) {
    const label = BUCKET_LABEL[b.bucket] || b.bucket;
    const pct = b.quota > 0 ? Math.min(100, (b.used / b.quota) * 100) : 0;
    const fill = el('span');
    fill.style.width = `${pct}%`; // CSSOM, allowed by the CSP (unlike a style attribute)
    const resets = new Date(b.resets_at);
    const sameDay = resets.toDateString() === new Date().toDateString();
    return el('li', { class: 'usage-row', 'data-bucket': b.bucket },
      el('span', { class: 'bucket' }, label),
      el('div', {
        class: pct >= 100 ? 'bar full' : pct >= 80 ? 'bar warn' : 'bar',
        role: 'meter',
        'aria-label': `${label} usage`,
        'aria-valuemin': 0,
        'aria-valuemax': b.quota,
        'aria-valuenow': Math.min(b.used, b.quota),
        'aria-valuetext': `${b.used} of ${b.quota} tokens`,
      }, fill),
      el('span', { class: 'count' }, `${num(b.used)} / ${num(b.quota)}`),
      el('span', { class: 'reset', title: b.resets_at },
        `resets at ${clock(resets, !sameDay)} (in ${duration(b.reset_in)})`));
  }

  /** Bars for a quota-usage body, or a short note when there is no quota. */
  function usageList(usage) {
    if (!usage || usage.error) {
      return el('span', { class: 'muted' }, `Usage unavailable${usage ? `: ${usage.error.message}` : ''}`);
    }
    if (!usage.buckets || usage.buckets.length === 0) return el('span', { class: 'muted' }, 'No quota');
    const notes = [];
    if (usage.source === 'tenant_default') notes.push('tenant default quota');
    if (usage.enforce === false) notes.push('not enforced: counted and warned only');
    return el('div', null,
      el('ul', { class: 'usage-list' }, usage.buckets.map(usageRow)),
      notes.length ? el('p', { class: 'hint' }, notes.join('; ')) : null);
  }

  function describeQuota(cc) {
    const parts = BUCKETS.filter((b) => cc[b]).map((b) => `${num(cc[b])} ${b.replace('_', ' ')}`);
    return `${parts.join(', ')}, ${cc.enforce ? 'enforced' : 'not enforced (count and warn only)'}`;
  }

  /** The quota editor of a client or an organization (PATCH `path` with `token_quota`). */
  function quotaForm(path, name, quota) {
    const cc = (quota && quota.client_credentials) || {};
    const inputs = {};
    const fields = BUCKETS.map((b) => {
      inputs[b] = el('input', {
        id: `quota-${b}`, name: b, type: 'number', min: 1, max: MAX_QUOTA, step: 1,
        inputmode: 'numeric', placeholder: 'no limit', 'aria-describedby': 'quota-hint',
        value: cc[b] === undefined ? '' : cc[b],
      });
      return el('div', null, el('label', { for: `quota-${b}` }, BUCKET_LABEL[b]), inputs[b]);
    });
    const enforce = el('input', { id: 'quota-enforce', name: 'enforce', type: 'checkbox' });
    enforce.checked = cc.enforce !== false;

    async function submit(ev) {
      ev.preventDefault();
      const limits = {};
      let bad = null;
      for (const b of BUCKETS) {
        const input = inputs[b];
        const raw = input.value.trim();
        input.removeAttribute('aria-invalid');
        if (raw === '' && !input.validity.badInput) continue;
        const n = Number(raw);
        if (raw === '' || !Number.isInteger(n) || n < 1 || n > MAX_QUOTA) {
          input.setAttribute('aria-invalid', 'true');
          bad = bad || input;
        } else {
          limits[b] = n;
        }
      }
      if (bad) {
        say(`Each limit must be a whole number from 1 to ${num(MAX_QUOTA)}, or empty.`, 'error');
        bad.focus();
        return;
      }
      const remove = Object.keys(limits).length === 0;
      const cc2 = { ...limits, enforce: enforce.checked };
      const ok = await confirmDialog(
        `Change the quota of ${name}?`,
        remove
          ? 'Its own quota will be removed; the tenant default quota, if any, applies from the next token request.'
          : `New quota: ${describeQuota(cc2)}. It applies from the next token request; tokens already counted in the current windows stay counted.`,
        'Save quota');
      if (!ok) {
        say('Quota not changed.');
        return;
      }
      try {
        await api('PATCH', path, { token_quota: remove ? null : { client_credentials: cc2 } });
        say(`Quota of ${name} saved.`, 'success');
        render(true);
      } catch (e) {
        say(`Could not save the quota: ${e.message}`, 'error');
      }
    }

    return el('form', { class: 'stack', id: 'quota-form', novalidate: true, onsubmit: submit },
      el('fieldset', null,
        el('legend', null, 'Token quota (client credentials)'),
        el('div', { class: 'fields' }, fields)),
      el('label', { class: 'check', for: 'quota-enforce' }, enforce,
        el('span', null, 'Enforce: refuse tokens over quota with 429 (unchecked: count and warn only)')),
      el('p', { class: 'hint', id: 'quota-hint' },
        'Limits count tokens per UTC minute, hour and day. Leave every limit empty to remove this quota (the tenant default, if any, then applies).'),
      el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary' }, 'Save quota…')));
  }

  // ---------------------------------------------------------------- chart

  /** Times (ms) of the events of one type and client since `since`, newest pages first. */
  async function eventTimes(type, clientId, since, keep) {
    const day = new Date(since).toISOString().slice(0, 10);
    const q = `type:${type} AND client_id:"${clientId}" AND date:[${day} TO *]`;
    const seen = new Map(); // by log_id: offset pages can overlap while events arrive
    for (let page = 0; page < MAX_LOG_PAGES; page++) {
      const items = await api('GET', `logs?q=${enc(q)}&per_page=${PAGE}&page=${page}`);
      for (const e of items) {
        const t = Date.parse(e.date);
        if (t >= since && keep(e)) seen.set(e.log_id, t);
      }
      const last = items[items.length - 1];
      if (items.length < PAGE || !last || Date.parse(last.date) < since) {
        return { times: [...seen.values()], complete: true };
      }
    }
    return { times: [...seen.values()], complete: false };
  }

  const is429 = (e) => Boolean(e.details && (e.details.status === 429 || e.details.error === 'too_many_requests'));

  /** A top of the y axis whose half is a whole number too. */
  function niceTop(max) {
    if (max <= 2) return 2;
    const p = 10 ** Math.floor(Math.log10(max));
    for (const m of [1, 2, 4, 6, 8, 10]) if (m * p >= max && (m * p) % 2 === 0) return m * p;
    return 10 * p;
  }

  function drawChart(tokens, rejected, start, summary) {
    const W = 960, H = 160, L = 40, R = 14, T = 8, B = 32;
    const pw = W - L - R, ph = H - T - B, base = T + ph, step = pw / tokens.length;
    const top = niceTop(Math.max(...tokens));
    const y = (v) => (base - (v / top) * ph).toFixed(1);
    const chart = svg('svg', {
      class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-labelledby': 'chart-title chart-desc',
    }, svg('title', { id: 'chart-title' }, 'Tokens per minute over the last 24 hours'),
    svg('desc', { id: 'chart-desc' }, summary));
    for (const v of [0, top / 2, top]) {
      chart.append(
        svg('line', { class: v ? 'grid-line' : 'axis', x1: L, x2: W - R, y1: y(v), y2: y(v) }),
        svg('text', { x: L - 8, y: Number(y(v)) + 4, 'text-anchor': 'end' }, num(v)));
    }
    for (let i = 0; i < tokens.length; i++) {
      const d = new Date(start + i * 60000);
      if (d.getMinutes() === 0 && d.getHours() % 3 === 0 && i < tokens.length - 60) {
        const x = (L + i * step).toFixed(1);
        chart.append(
          svg('line', { class: 'axis', x1: x, x2: x, y1: base, y2: base + 4 }),
          svg('text', { x, y: H - 6, 'text-anchor': 'middle' }, clock(d)));
      }
    }
    chart.append(svg('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, 'now'));
    let bars = '';
    let marks = '';
    tokens.forEach((v, i) => {
      if (v) bars += `M${(L + i * step).toFixed(2)} ${y(v)}h${Math.max(step, 1.5).toFixed(2)}V${base}H${(L + i * step).toFixed(2)}Z`;
    });
    rejected.forEach((v, i) => {
      if (v) marks += `M${(L + (i + 0.5) * step - 2).toFixed(2)} ${base + 6}h4v9h-4Z`;
    });
    chart.append(svg('path', { class: 'tokens', d: bars }), svg('path', { class: 'rejected', d: marks }));
    return chart;
  }

  async function loadChart(box, clientId, seq) {
    const end = Math.ceil((Date.now() + 1) / 60000) * 60000;
    const start = end - 1440 * 60000;
    try {
      const [ok, failed] = await Promise.all([
        eventTimes('seccft', clientId, start, () => true),
        eventTimes('feccft', clientId, start, is429),
      ]);
      if (seq !== renderSeq) return;
      const tokens = new Array(1440).fill(0);
      const rejected = new Array(1440).fill(0);
      const slot = (t) => Math.min(1439, Math.max(0, Math.floor((t - start) / 60000)));
      ok.times.forEach((t) => tokens[slot(t)]++);
      failed.times.forEach((t) => rejected[slot(t)]++);
      const peak = Math.max(...tokens);
      const at = (i) => clock(new Date(start + i * 60000));
      const lastRejected = rejected.reduce((acc, v, i) => (v ? i : acc), -1);
      const summary = `${plural(ok.times.length, 'token', 'tokens')} issued in the last 24 hours` +
        (peak ? `, at most ${num(peak)} in one minute (${at(tokens.indexOf(peak))})` : '') +
        `; ${plural(failed.times.length, 'request', 'requests')} rejected with 429` +
        (lastRejected >= 0 ? `, the last at ${at(lastRejected)}` : '') + '.' +
        (ok.complete && failed.complete ? '' : ` Only the latest ${num(MAX_LOG_PAGES * PAGE)} events of each kind are drawn.`);
      const rows = [];
      for (let i = 1439; i >= 0 && rows.length < 120; i--) {
        if (tokens[i] || rejected[i]) rows.push(el('tr', null, el('td', null, at(i)), el('td', null, num(tokens[i])), el('td', null, num(rejected[i]))));
      }
      box.replaceChildren(
        drawChart(tokens, rejected, start, summary),
        el('ul', { class: 'legend' },
          el('li', null, el('span', { class: 'swatch tokens' }), 'Tokens issued per minute'),
          el('li', null, el('span', { class: 'swatch rejected' }), 'Minutes with requests rejected (429)')),
        el('p', { class: 'small', id: 'chart-summary' }, summary),
        rows.length ? el('details', null, el('summary', null, 'Minutes with activity (table)'),
          el('table', null,
            el('thead', null, el('tr', null, el('th', { scope: 'col' }, 'Minute'), el('th', { scope: 'col' }, 'Tokens'), el('th', { scope: 'col' }, 'Rejected (429)'))),
            el('tbody', null, rows))) : null);
    } catch (e) {
      if (seq === renderSeq) box.replaceChildren(el('p', { class: 'muted' }, `Chart unavailable: ${e.message}`));
    } finally {
      box.removeAttribute('aria-busy');
    }
  }

  // ---------------------------------------------------------------- views

  function viewSignIn() {
    const id = el('input', { id: 'client-id', name: 'client_id', type: 'text', autocomplete: 'username', spellcheck: 'false', required: true });
    const secret = el('input', { id: 'client-secret', name: 'client_secret', type: 'password', autocomplete: 'current-password', required: true });
    const button = el('button', { type: 'submit', class: 'primary', id: 'sign-in' }, 'Sign in');
    async function submit(ev) {
      ev.preventDefault();
      if (!id.value.trim() || !secret.value) {
        say('Enter a client ID and a client secret.', 'error');
        (id.value.trim() ? secret : id).focus();
        return;
      }
      button.disabled = true;
      say('Signing in…');
      try {
        await signIn(id.value.trim(), secret.value);
        secret.value = '';
        say('Signed in.', 'success');
        render(true);
      } catch (e) {
        secret.value = '';
        button.disabled = false;
        say(`Sign-in failed: ${e.message}`, 'error');
        secret.focus();
      }
    }
    return el('section', { class: 'signin', 'aria-labelledby': 'sign-in-title' },
      el('div', { class: 'panel' },
        el('h1', { id: 'sign-in-title', tabindex: '-1' }, 'Sign in'),
        el('p', { class: 'muted' }, 'Use the client ID and secret of an application granted the Management API, such as the admin credentials Ration printed on its first start. Only the access token is kept, in this tab.'),
        el('form', { class: 'stack', id: 'sign-in-form', novalidate: true, onsubmit: submit },
          el('div', null, el('label', { for: 'client-id' }, 'Client ID'), id),
          el('div', null, el('label', { for: 'client-secret' }, 'Client secret'), secret),
          el('div', { class: 'actions' }, button))));
  }

  function table(caption, headers, rows, empty) {
    return el('div', { class: 'table-wrap' }, el('table', null,
      el('caption', { class: 'small' }, caption),
      el('thead', null, el('tr', null, headers.map((h) => el('th', { scope: 'col' }, h)))),
      el('tbody', null, rows.length ? rows : el('tr', null, el('td', { colspan: headers.length, class: 'muted' }, empty)))));
  }

  async function viewApps() {
    const clients = await listAll('clients', 'clients');
    clients.sort((a, b) => a.name.localeCompare(b.name));
    const usage = await mapLimit(clients, 6, (c) => api('GET', `clients/${enc(c.client_id)}/quota-usage`));
    const rows = clients.map((c, i) => el('tr', { 'data-client-id': c.client_id },
      el('td', null, el('a', { href: `#/apps/${enc(c.client_id)}` }, c.name)),
      el('td', null, el('code', null, c.client_id)),
      el('td', null, statusBadge(c)),
      el('td', { class: 'usage-cell' }, usageList(usage[i]))));
    return el('section', { 'aria-labelledby': 'apps-title' },
      viewHead('apps-title', 'Applications', el('span', { class: 'spacer' }), refreshButton()),
      table(`${plural(clients.length, 'application', 'applications')}. Usage counts the tokens issued in the current UTC minute, hour and day.`,
        ['Name', 'Client ID', 'Status', 'Quota usage'], rows, 'No applications yet.'));
  }

  async function viewApp(id) {
    const [client, usage] = await Promise.all([
      api('GET', `clients/${enc(id)}`),
      api('GET', `clients/${enc(id)}/quota-usage`),
    ]);
    const paused = isPaused(client);
    const self = (session() || {}).client_id === client.client_id;
    const chartBox = el('div', { class: 'chart-wrap', 'aria-busy': 'true' },
      el('p', { class: 'muted' }, 'Loading the last 24 hours of events…'));
    loadChart(chartBox, client.client_id, renderSeq);

    async function togglePause() {
      const ok = await confirmDialog(
        paused ? `Resume ${client.name}?` : `Pause ${client.name}?`,
        paused
          ? 'It can get tokens again right away, within its quota.'
          : 'Its token requests will be refused with 403 unauthorized_client until you resume it. Tokens already issued stay valid until they expire.',
        paused ? 'Resume' : 'Pause');
      if (!ok) {
        say('Nothing changed.');
        return;
      }
      const grants = (client.grant_types || []).filter((g) => g !== 'client_credentials');
      if (paused) grants.push('client_credentials');
      try {
        await api('PATCH', `clients/${enc(client.client_id)}`, { grant_types: grants });
        say(paused ? `${client.name} resumed.` : `${client.name} paused: its token requests are now refused.`, 'success');
        render(true);
      } catch (e) {
        say(`Could not ${paused ? 'resume' : 'pause'} ${client.name}: ${e.message}`, 'error');
      }
    }

    const source = { client: 'its own quota', tenant_default: 'the tenant default quota' }[usage.source] || 'no quota';
    return el('section', { 'aria-labelledby': 'app-title' },
      el('p', { class: 'crumb' }, el('a', { href: '#/apps' }, '← Applications')),
      viewHead('app-title', client.name, statusBadge(client), el('span', { class: 'spacer' }), refreshButton(),
        el('button', {
          type: 'button', id: 'pause-toggle', class: paused ? 'primary' : 'danger', disabled: self,
          'aria-describedby': self ? 'self-note' : null, onclick: togglePause,
        }, paused ? 'Resume application…' : 'Pause application…')),
      el('p', { class: 'muted small' }, 'Client ID ', el('code', null, client.client_id),
        ` · grant types: ${(client.grant_types || []).join(', ') || 'none'} · applies ${source}`),
      self ? el('p', { class: 'hint', id: 'self-note' }, 'You are signed in with this application: pausing it would lock you out.') : null,
      el('section', { class: 'panel', 'aria-labelledby': 'chart-heading' },
        el('h2', { id: 'chart-heading' }, 'Tokens per minute, last 24 hours'), chartBox),
      el('div', { class: 'grid' },
        el('section', { class: 'panel', 'aria-labelledby': 'usage-title' },
          el('h2', { id: 'usage-title' }, 'Current usage'), usageList(usage)),
        el('section', { class: 'panel', 'aria-labelledby': 'quota-title' },
          el('h2', { id: 'quota-title' }, 'Quota'),
          quotaForm(`clients/${enc(client.client_id)}`, client.name, client.token_quota))));
  }

  async function viewOrgs() {
    const orgs = await listAll('organizations', 'organizations');
    orgs.sort((a, b) => a.name.localeCompare(b.name));
    const usage = await mapLimit(orgs, 6, (o) => api('GET', `organizations/${enc(o.id)}/quota-usage`));
    const rows = orgs.map((o, i) => el('tr', { 'data-org-id': o.id },
      el('td', null, el('a', { href: `#/orgs/${enc(o.id)}` }, o.display_name || o.name)),
      el('td', null, o.name),
      el('td', null, el('code', null, o.id)),
      el('td', { class: 'usage-cell' }, usageList(usage[i]))));
    return el('section', { 'aria-labelledby': 'orgs-title' },
      viewHead('orgs-title', 'Organizations', el('span', { class: 'spacer' }), refreshButton()),
      table(`${plural(orgs.length, 'organization', 'organizations')}. Usage counts the tokens issued for each organization in the current UTC minute, hour and day.`,
        ['Display name', 'Name', 'ID', 'Quota usage'], rows, 'No organizations yet.'));
  }

  async function viewOrg(id) {
    const [org, usage] = await Promise.all([
      api('GET', `organizations/${enc(id)}`),
      api('GET', `organizations/${enc(id)}/quota-usage`),
    ]);
    const title = org.display_name || org.name;
    return el('section', { 'aria-labelledby': 'org-title' },
      el('p', { class: 'crumb' }, el('a', { href: '#/orgs' }, '← Organizations')),
      viewHead('org-title', title, el('span', { class: 'spacer' }), refreshButton()),
      el('p', { class: 'muted small' }, 'Name ', el('code', null, org.name), ' · ID ', el('code', null, org.id)),
      el('div', { class: 'grid' },
        el('section', { class: 'panel', 'aria-labelledby': 'usage-title' },
          el('h2', { id: 'usage-title' }, 'Current usage'), usageList(usage)),
        el('section', { class: 'panel', 'aria-labelledby': 'quota-title' },
          el('h2', { id: 'quota-title' }, 'Quota'),
          quotaForm(`organizations/${enc(org.id)}`, title, org.token_quota))));
  }

  function eventRow(e) {
    const failure = e.type && e.type.startsWith('f');
    const when = new Date(e.date);
    const request = e.details && e.details.request;
    const what = e.description || (request ? `${request.method} ${request.path}` : '');
    const status = e.details && (e.details.status || (e.details.response && e.details.response.statusCode));
    return el('tr', { class: failure ? 'failure' : null },
      el('td', { class: 'nowrap', title: e.date }, `${when.toLocaleDateString('en-CA')} ${when.toLocaleTimeString('en-GB', { hour12: false })}`),
      el('td', null, el('span', { class: `badge ${failure ? 'fail' : 'neutral'}` }, EVENT_LABEL[e.type] || e.type), ' ', el('code', null, e.type)),
      el('td', null, e.client_id ? el('a', { href: `#/apps/${enc(e.client_id)}` }, e.client_name || e.client_id) : ''),
      el('td', null, what, status ? ` (${status})` : ''));
  }

  async function viewEvents(seq) {
    const tbody = el('tbody');
    const updated = el('span', { class: 'muted small', id: 'events-updated' });
    const auto = el('input', { type: 'checkbox', id: 'events-auto' });
    auto.checked = true;
    async function refresh() {
      if (document.hidden) return;
      try {
        const items = await api('GET', 'logs?per_page=50');
        if (seq !== renderSeq) return;
        tbody.replaceChildren(...(items.length ? items.map(eventRow) : [el('tr', null, el('td', { colspan: 4, class: 'muted' }, 'No events yet.'))]));
        updated.textContent = `Updated ${new Date().toLocaleTimeString('en-GB', { hour12: false })}`;
      } catch (e) {
        if (seq === renderSeq && e.status !== 401) say(`Could not load events: ${e.message}`, 'error');
      }
    }
    await refresh();
    const start = () => {
      stopTimer();
      if (auto.checked && seq === renderSeq) timer = setInterval(refresh, EVENTS_REFRESH_MS);
    };
    auto.addEventListener('change', start);
    start();
    return el('section', { 'aria-labelledby': 'events-title' },
      viewHead('events-title', 'Recent events', el('span', { class: 'spacer' }), updated,
        el('label', { class: 'check', for: 'events-auto' }, auto, el('span', null, `Refresh every ${EVENTS_REFRESH_MS / 1000} s`)),
        el('button', { type: 'button', onclick: refresh }, 'Refresh now')),
      el('div', { class: 'table-wrap' }, el('table', null,
        el('caption', { class: 'small' }, 'The last 50 events, newest first.'),
        el('thead', null, el('tr', null, ['Time', 'Event', 'Application', 'Description'].map((h) => el('th', { scope: 'col' }, h)))),
        tbody)));
  }

  // ---------------------------------------------------------------- routing

  function stopTimer() {
    if (timer !== null) clearInterval(timer);
    timer = null;
  }

  function show(node, focus) {
    main.replaceChildren(node);
    const h1 = main.querySelector('h1');
    document.title = h1 ? `${h1.textContent} · Ration` : 'Ration dashboard';
    if (focus && h1) h1.focus();
  }

  /** Draws the view named by the hash; `focus` moves focus to its heading (navigation). */
  async function render(focus) {
    stopTimer();
    const seq = ++renderSeq;
    const s = session();
    document.getElementById('nav').hidden = !s;
    document.getElementById('who').hidden = !s;
    if (!s) {
      show(viewSignIn(), focus);
      return;
    }
    document.getElementById('who-id').textContent = s.client_id;
    const [name, rawId] = location.hash.replace(/^#\/?/, '').split('/');
    const id = rawId ? decodeURIComponent(rawId) : '';
    const views = { apps: viewApps, orgs: viewOrgs, events: viewEvents };
    const view = name === 'apps' && id ? () => viewApp(id) : name === 'orgs' && id ? () => viewOrg(id) : views[name] || viewApps;
    const current = views[name] ? name : 'apps';
    for (const a of document.querySelectorAll('#nav a')) {
      if (a.dataset.view === current) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    main.setAttribute('aria-busy', 'true');
    if (focus) show(el('p', { class: 'muted' }, 'Loading…'), false);
    try {
      const node = await view(seq);
      if (seq === renderSeq) show(node, focus);
    } catch (e) {
      if (seq === renderSeq && e.status !== 401) {
        say(`Could not load this view: ${e.message}`, 'error');
        show(el('section', null, el('h1', { tabindex: '-1' }, 'Something went wrong'),
          el('p', null, e.message), el('p', null, el('a', { href: '#/apps' }, 'Back to applications'))), focus);
      }
    } finally {
      if (seq === renderSeq) main.removeAttribute('aria-busy');
    }
  }

  document.getElementById('sign-out').addEventListener('click', () => signOut('Signed out.'));
  document.getElementById('skip-link').addEventListener('click', (ev) => {
    ev.preventDefault();
    main.focus();
  });
  window.addEventListener('hashchange', () => {
    if (!location.hash.startsWith('#/') && location.hash !== '') return;
    say(''); // a message about the previous view does not belong to the next one
    render(true);
  });
  render(false);
})();
