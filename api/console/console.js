// Ordertrail back-office console: plain JavaScript, no dependencies, served
// from the API binary. Every call goes to this origin's /v1 routes with the
// signed-in token; the API's roles decide what each page may show.
'use strict';

const TOKEN_KEY = 'ordertrail.token';
const STATUSES = ['placed', 'confirmed', 'accepted', 'ready_for_pickup', 'picked_up', 'delivered', 'cancelled'];
const STATUS_LABEL = {
  placed: 'Placed', confirmed: 'Confirmed', accepted: 'Accepted', ready_for_pickup: 'Ready',
  picked_up: 'Picked up', delivered: 'Delivered', cancelled: 'Cancelled / rejected', rejected: 'Rejected',
};
const CITY_OF_ZONE = { 'Europe/Berlin': 'Berlin', 'Europe/London': 'London', 'America/New_York': 'New York' };
const FINAL_SHOWN = 40;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') node.textContent = v; else node.setAttribute(k, String(v));
  }
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function money(minor, currency) {
  if (minor === null || minor === undefined) return '–';
  const sign = minor < 0 ? '-' : '';
  const abs = Math.abs(minor);
  const units = Math.floor(abs / 100);
  const cents = String(abs % 100).padStart(2, '0');
  return `${sign}${units.toLocaleString('en')}.${cents} ${currency || ''}`.trim();
}

function shortId(id) { return id ? String(id).slice(0, 8) : '–'; }
function time(t) { return t ? new Date(t).toLocaleTimeString('en-GB') : '–'; }
function dateTime(t) { return t ? new Date(t).toISOString().replace('T', ' ').slice(0, 19) : '–'; }
function isoDay(d) { return d.toISOString().slice(0, 10); }
function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// ---- session -------------------------------------------------------------

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function claims() {
  const t = token();
  if (!t) return null;
  try {
    const part = t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part + '==='.slice((part.length + 3) % 4)));
  } catch (_) { return null; }
}

function takeTokenFromHash() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + '#board');
  }
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, opts) {
  const headers = { Authorization: `Bearer ${token()}` };
  const res = await fetch(path, { headers, ...(opts || {}) });
  if (!res.ok) {
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    throw new ApiError(res.status, body);
  }
  return res;
}

async function apiJson(path) { return (await api(path)).json(); }

function banner(message) {
  const b = $('banner');
  if (!message) { b.classList.add('hidden'); b.textContent = ''; return; }
  b.textContent = message;
  b.classList.remove('hidden');
}

function explain(err) {
  if (err instanceof ApiError) {
    const c = claims();
    if (err.status === 401) { signOut('Your token was refused (' + ((err.body && err.body.code) || 'unauthorized') + '). Sign in again.'); return; }
    if (err.status === 403) {
      banner(`Forbidden: a ${c ? c.role : 'this'} token may not open this page (the API answered 403 ${(err.body && err.body.code) || ''}).`);
      return;
    }
    if (err.status === 404) { banner('Not found (or not visible to this token).'); return; }
    banner(`The API answered ${err.status} ${(err.body && err.body.code) || ''}: ${err.message}`);
    return;
  }
  if (err && err.name === 'AbortError') return;
  banner(`Request failed: ${err}`);
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopPage();
  route();
  if (message) banner(message);
}

// ---- Server-Sent Events over fetch (the token goes in a header, not the URL)

function sse(path, onMessage, setLive, signal) {
  (async () => {
    let lastId = null;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const headers = { Authorization: `Bearer ${token()}` };
        if (lastId) headers['Last-Event-ID'] = lastId;
        const res = await fetch(path, { headers, signal });
        if (!res.ok) {
          let body = null;
          try { body = await res.json(); } catch (_) { /* ignore */ }
          const err = new ApiError(res.status, body);
          if (res.status === 401 || res.status === 403 || res.status === 404) { setLive(false); explain(err); return; }
          throw err;
        }
        setLive(true);
        failures = 0;
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let id = null; let event = 'message'; let data = '';
            for (const line of block.split('\n')) {
              if (line.startsWith('id:')) id = line.slice(3).trim();
              else if (line.startsWith('event:')) event = line.slice(6).trim();
              else if (line.startsWith('data:')) data += line.slice(5).trimStart();
            }
            if (!data) continue;
            if (id) lastId = id;
            try { onMessage(event, JSON.parse(data)); } catch (e) { console.error(e); }
          }
        }
      } catch (e) {
        if (signal.aborted) return;
      }
      setLive(false);
      failures += 1;
      await sleep(Math.min(5000, 500 * failures));
    }
  })();
}

function liveBadge(id) {
  return (on) => {
    const b = $(id);
    b.textContent = on ? 'live' : 'reconnecting';
    b.classList.toggle('on', on);
    b.classList.toggle('off', !on);
  };
}

// ---- reference data --------------------------------------------------------

let restaurantsCache = null;
async function restaurants() {
  if (!restaurantsCache) {
    const list = await apiJson('/v1/admin/restaurants');
    restaurantsCache = Array.isArray(list) ? list : (list.items || []);
  }
  return restaurantsCache;
}
function restaurantName(id) {
  const r = (restaurantsCache || []).find((x) => x.id === id);
  return r ? r.name : shortId(id);
}
function fillRestaurantSelect(select, list) {
  if (select.options.length > 1) return;
  for (const r of list) select.appendChild(el('option', { value: r.id, text: r.name }));
}

// ---- pages -----------------------------------------------------------------

let pageAbort = null;
let pageTimers = [];
function stopPage() {
  if (pageAbort) pageAbort.abort();
  pageAbort = null;
  pageTimers.forEach(clearInterval);
  pageTimers = [];
}

// Board ----------------------------------------------------------------------

async function showBoard(signal) {
  const list = await restaurants();
  fillRestaurantSelect($('board-restaurant'), list);
  const statusSelect = $('board-status');
  if (statusSelect.options.length === 1) {
    for (const s of STATUSES.concat(['rejected'])) statusSelect.appendChild(el('option', { value: s, text: STATUS_LABEL[s] }));
  }
  const restaurant = $('board-restaurant').value;
  const status = $('board-status').value;
  const orders = new Map();
  const fromStream = new Set();

  const render = (flashId) => {
    const board = $('board');
    clear(board);
    let shown = 0;
    for (const s of STATUSES) {
      const items = [...orders.values()]
        .filter((o) => !status || o.status === status)
        .filter((o) => (s === 'cancelled' ? (o.status === 'cancelled' || o.status === 'rejected') : o.status === s))
        .sort((a, b) => (b.placed_at || '').localeCompare(a.placed_at || ''));
      const column = el('div', { class: `column st-${s}`, 'data-status': s },
        el('h3', {}, el('span', { text: STATUS_LABEL[s] }), el('span', { text: String(items.length) })));
      for (const o of items.slice(0, FINAL_SHOWN)) {
        column.appendChild(el('a', {
          class: 'order' + (o.id === flashId ? ' flash' : ''), href: `#order/${o.id}`, 'data-order-id': o.id,
        },
        el('div', { class: 'r', text: restaurantName(o.restaurant_id) }),
        el('div', { class: 'm' }, el('span', { class: 'mono', text: shortId(o.id) }), el('span', { text: money(o.total_minor, o.currency) })),
        el('div', { class: 'm' }, el('span', { text: time(o.placed_at) }), el('span', { text: o.payment_method || '' }))));
        shown += 1;
      }
      board.appendChild(column);
    }
    $('board-count').textContent = `${[...orders.values()].filter((o) => !status || o.status === status).length} orders`;
    return shown;
  };

  // The stream is filtered by restaurant only: an order leaving the chosen
  // status must leave the board too.
  const params = new URLSearchParams();
  if (restaurant) params.set('restaurant_id', restaurant);
  // Subscribe first, then load the list: nothing placed in between is lost.
  sse(`/v1/stream/ops?${params}`, (event, e) => {
    if (event !== 'order_status' || !e.order_id) return;
    const known = orders.get(e.order_id) || { id: e.order_id, restaurant_id: e.restaurant_id };
    if (e.event_type === 'OrderPlaced') {
      const p = e.payload || {};
      known.placed_at = p.placed_at;
      known.total_minor = p.price && p.price.total ? p.price.total.amount : null;
      known.currency = p.price && p.price.total ? p.price.total.currency : '';
      known.payment_method = p.payment_method ? p.payment_method.kind : '';
    }
    known.status = e.status || known.status;
    orders.set(e.order_id, known);
    fromStream.add(e.order_id);
    render(e.order_id);
  }, liveBadge('board-live'), signal);

  const query = new URLSearchParams({ limit: '200' });
  if (restaurant) query.set('restaurant_id', restaurant);
  if (status) query.set('status', status);
  const page = await apiJson(`/v1/orders?${query}`);
  for (const o of page.items) {
    if (fromStream.has(o.order_id)) {
      const known = orders.get(o.order_id);
      if (known.total_minor === undefined || known.total_minor === null) {
        Object.assign(known, { placed_at: o.placed_at, total_minor: o.total_minor, currency: o.currency, payment_method: o.payment_method });
      }
      continue;
    }
    orders.set(o.order_id, {
      id: o.order_id, status: o.status, restaurant_id: o.restaurant_id, placed_at: o.placed_at,
      total_minor: o.total_minor, currency: o.currency, payment_method: o.payment_method,
    });
  }
  render(null);
}

// Order detail ---------------------------------------------------------------

async function showOrder(id) {
  $('order-id').textContent = id;
  const money_ = $('order-money');
  clear(money_);
  clear($('order-audit'));
  $('asof-result').textContent = '';
  $('asof-form').onsubmit = async (ev) => {
    ev.preventDefault();
    const version = $('asof-version').value;
    const at = $('asof-at').value.trim();
    const q = version ? `version=${encodeURIComponent(version)}` : `at=${encodeURIComponent(at || new Date().toISOString())}`;
    try {
      const state = await apiJson(`/v1/audit/orders/${id}/state?${q}`);
      $('asof-result').textContent = JSON.stringify(state, null, 2);
    } catch (e) {
      $('asof-result').textContent = e instanceof ApiError ? `${e.status} ${(e.body && e.body.code) || ''}: ${e.message}` : String(e);
    }
  };

  let detail = null;
  try {
    detail = await apiJson(`/v1/orders/${id}`);
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 404) throw e;
  }
  const aggregates = [['orders', id]];
  if (detail) {
    const o = detail.order;
    $('order-status').textContent = o.status;
    const row = (label, minor, cls) => el('tr', { class: cls || null }, el('td', { text: label }), el('td', { class: 'num', text: money(minor, o.currency) }));
    money_.appendChild(el('tr', {}, el('td', { text: 'Restaurant' }), el('td', { class: 'num', text: restaurantName(o.restaurant_id) })));
    money_.appendChild(row('Items (subtotal)', o.subtotal_minor));
    money_.appendChild(row('Delivery fee', o.delivery_fee_minor));
    money_.appendChild(row('Service fee', o.service_fee_minor));
    money_.appendChild(row('Tax', o.tax_minor));
    money_.appendChild(row('Tip', o.tip_minor));
    money_.appendChild(row('Total', o.total_minor, 'total'));
    if (o.commission_minor !== null && o.commission_minor !== undefined) money_.appendChild(row('Commission', o.commission_minor));
    if (o.provider_fees_minor !== null && o.provider_fees_minor !== undefined) money_.appendChild(row('Provider fees', o.provider_fees_minor));
    money_.appendChild(row('Captured', o.captured_minor));
    money_.appendChild(row('Cash collected', o.cash_collected_minor));
    money_.appendChild(row('Refunded', o.refunded_minor));
    money_.appendChild(el('tr', {}, el('td', { text: 'Payment' }), el('td', { class: 'num', text: `${o.payment_method} · ${o.payment_status || '–'}` })));
    if (o.payment_id) aggregates.push(['payments', o.payment_id]);
    const delivery = (detail.timeline || []).find((t) => t.aggregate_type === 'Delivery');
    if (delivery) aggregates.push(['deliveries', delivery.aggregate_id]);
  } else {
    $('order-status').textContent = 'not in the read model yet';
  }

  const events = [];
  for (const [kind, aggId] of aggregates) {
    const page = await apiJson(`/v1/audit/${kind}/${aggId}/events?limit=1000`);
    events.push(...page.items);
  }
  events.sort((a, b) => (a.transaction_id - b.transaction_id) || (a.global_position - b.global_position));
  const table = $('order-audit');
  table.appendChild(el('tr', {}, ...['Recorded', 'Aggregate', '#', 'Event', 'Actor', 'Command', 'Correlation', 'Request'].map((h) => el('th', { text: h }))));
  for (const e of events) {
    const m = e.metadata || {};
    const actor = m.actor ? `${m.actor.role}${m.actor.subject ? ' ' + m.actor.subject : ''}` : `${m.actor_role || ''}${m.actor_subject ? ' ' + m.actor_subject : ''}`;
    const payload = el('tr', { class: 'hidden' }, el('td', { colspan: 8 }, el('pre', { class: 'json', text: JSON.stringify(e.payload, null, 2) })));
    table.appendChild(el('tr', { class: 'clickable', onclick: () => payload.classList.toggle('hidden') },
      el('td', { text: dateTime(e.recorded_at) }),
      el('td', { text: e.aggregate_type }),
      el('td', { class: 'num', text: String(e.sequence) }),
      el('td', { text: e.event_type }),
      el('td', { text: actor }),
      el('td', { class: 'mono', text: shortId(m.command_id) }),
      el('td', { class: 'mono', text: shortId(m.correlation_id) }),
      el('td', { class: 'mono', text: shortId(m.request_id) })));
    table.appendChild(payload);
  }
}

// Rider map --------------------------------------------------------------------

async function showMap(signal) {
  const list = await restaurants();
  const citySelect = $('map-city');
  const cities = [...new Set(list.map((r) => CITY_OF_ZONE[r.time_zone] || r.time_zone))];
  if (citySelect.options.length === 0) for (const c of cities) citySelect.appendChild(el('option', { value: c, text: c }));
  const deliveries = new Map();
  const riders = new Map();
  const byId = (id) => list.find((r) => r.id === id);
  const cityOf = (d) => { const r = byId(d.restaurant_id); return r ? (CITY_OF_ZONE[r.time_zone] || r.time_zone) : null; };

  const render = () => {
    const city = citySelect.value || cities[0];
    const map = $('map');
    const inCity = [...deliveries.values()].filter((d) => cityOf(d) === city);
    const cityRestaurants = list.filter((r) => (CITY_OF_ZONE[r.time_zone] || r.time_zone) === city);
    const points = [];
    for (const r of cityRestaurants) points.push({ lat: r.lat, lon: r.lon });
    for (const d of inCity) {
      if (d.dropoff) points.push(d.dropoff);
      if (d.rider) points.push(d.rider);
    }
    if (points.length === 0) points.push({ lat: 52.52, lon: 13.40 });
    let minLat = Math.min(...points.map((p) => p.lat)); let maxLat = Math.max(...points.map((p) => p.lat));
    let minLon = Math.min(...points.map((p) => p.lon)); let maxLon = Math.max(...points.map((p) => p.lon));
    const midLat = (minLat + maxLat) / 2;
    const k = Math.cos(midLat * Math.PI / 180);
    const span = Math.max((maxLat - minLat), (maxLon - minLon) * k, 0.02) * 1.25;
    const cLat = (minLat + maxLat) / 2; const cLon = (minLon + maxLon) / 2;
    minLat = cLat - span / 2; maxLat = cLat + span / 2;
    const W = 1000; const H = 640; const scale = H / span;
    const xy = (p) => [W / 2 + (p.lon - cLon) * k * scale, H / 2 - (p.lat - cLat) * scale];

    // Keep rider circles (they animate between positions); redraw the rest.
    for (const child of [...map.childNodes]) if (!(child.classList && child.classList.contains('rider'))) map.removeChild(child);
    const back = svg('g', {});
    for (let x = 0; x <= W; x += 50) back.appendChild(svg('line', { class: 'grid', x1: x, y1: 0, x2: x, y2: H }));
    for (let y = 0; y <= H; y += 50) back.appendChild(svg('line', { class: 'grid', x1: 0, y1: y, x2: W, y2: y }));
    const metresPerPx = 111320 / scale;
    const barPx = 1000 / metresPerPx;
    back.appendChild(svg('line', { class: 'scale', x1: 20, y1: H - 20, x2: 20 + barPx, y2: H - 20 }));
    back.appendChild(svg('text', { x: 20, y: H - 28, text: '1 km' }));
    map.insertBefore(back, map.firstChild);
    const front = svg('g', {});
    for (const d of inCity) {
      const r = byId(d.restaurant_id);
      const pickup = r ? { lat: r.lat, lon: r.lon } : null;
      const path = [];
      if (d.rider) path.push(xy(d.rider));
      if (pickup && d.status !== 'picked_up') path.push(xy(pickup));
      if (d.dropoff) path.push(xy(d.dropoff));
      if (path.length > 1) front.appendChild(svg('polyline', { class: 'route', points: path.map((p) => p.join(',')).join(' ') }));
      if (d.dropoff) { const [x, y] = xy(d.dropoff); front.appendChild(svg('circle', { class: 'dropoff', cx: x, cy: y, r: 7, 'data-delivery-id': d.id })); }
    }
    for (const r of cityRestaurants) {
      const [x, y] = xy(r);
      front.appendChild(svg('rect', { class: 'restaurant', x: x - 8, y: y - 8, width: 16, height: 16, rx: 3 }));
      front.appendChild(svg('text', { x: x + 12, y: y + 4, text: r.name }));
    }
    map.insertBefore(front, back.nextSibling);
    const seen = new Set();
    for (const d of inCity) {
      if (!d.rider) continue;
      seen.add(d.id);
      let c = riders.get(d.id);
      if (!c) { c = svg('circle', { class: 'rider', r: 8, 'data-delivery-id': d.id }); riders.set(d.id, c); }
      const [x, y] = xy(d.rider);
      c.setAttribute('cx', x.toFixed(1)); c.setAttribute('cy', y.toFixed(1));
      c.setAttribute('data-lat', d.rider.lat); c.setAttribute('data-lon', d.rider.lon);
      map.appendChild(c);
    }
    for (const [id, c] of riders) if (!seen.has(id)) { c.remove(); riders.delete(id); }

    const table = $('map-list');
    clear(table);
    table.appendChild(el('tr', {}, ...['Order', 'Restaurant', 'Status', 'To pickup', 'Pickup at', 'Drop-off at'].map((h) => el('th', { text: h }))));
    for (const d of inCity) {
      table.appendChild(el('tr', { class: 'clickable', onclick: () => { location.hash = `#order/${d.order_id}`; } },
        el('td', { class: 'mono', text: shortId(d.order_id) }),
        el('td', { text: restaurantName(d.restaurant_id) }),
        el('td', { text: d.status || '' }),
        el('td', { class: 'num', text: d.distance_to_pickup_m !== null && d.distance_to_pickup_m !== undefined ? `${Math.round(d.distance_to_pickup_m)} m` : '–' }),
        el('td', { text: time(d.pickup_eta) }),
        el('td', { text: time(d.dropoff_eta) })));
    }
  };
  citySelect.onchange = () => { for (const c of riders.values()) c.remove(); riders.clear(); render(); };

  sse('/v1/stream/ops', (event, e) => {
    if (e.aggregate_type !== 'Delivery') return;
    const id = e.aggregate_id;
    const d = deliveries.get(id) || { id, order_id: e.order_id, restaurant_id: e.restaurant_id };
    const p = e.payload || {};
    switch (e.event_type) {
      case 'DeliveryRequested': d.dropoff = p.dropoff || d.dropoff; d.status = 'requested'; break;
      case 'RiderAssigned': d.rider_id = p.rider_id; d.status = 'assigned'; break;
      case 'RiderUnassigned': d.rider_id = null; d.status = 'requested'; break;
      case 'PickupConfirmed': d.status = 'picked_up'; break;
      case 'RiderLocationReported':
        d.rider = p.location;
        if (e.eta) Object.assign(d, e.eta);
        break;
      case 'DeliveryCompleted': case 'DeliveryFailed': case 'DeliveryCancelled':
        deliveries.delete(id); render(); return;
      default: break;
    }
    deliveries.set(id, d);
    render();
  }, liveBadge('map-live'), signal);

  const active = await apiJson('/v1/deliveries/active');
  for (const a of active.items) {
    const d = deliveries.get(a.delivery_id) || { id: a.delivery_id };
    Object.assign(d, {
      order_id: a.order_id, restaurant_id: a.restaurant_id, status: d.status || a.status, rider_id: a.rider_id,
      pickup_eta: d.pickup_eta || a.pickup_eta, dropoff_eta: d.dropoff_eta || a.dropoff_eta,
      distance_to_pickup_m: d.distance_to_pickup_m ?? a.distance_to_pickup_m,
    });
    if (!d.rider && a.rider_lat !== null && a.rider_lat !== undefined) d.rider = { lat: a.rider_lat, lon: a.rider_lon };
    deliveries.set(a.delivery_id, d);
  }
  render();
  // Drop-off points of deliveries requested before the page opened: from the store.
  await Promise.all([...deliveries.values()].filter((d) => !d.dropoff).slice(0, 100).map(async (d) => {
    try {
      const page = await apiJson(`/v1/audit/deliveries/${d.id}/events?limit=1`);
      const first = page.items[0];
      if (first && first.payload && first.payload.dropoff) d.dropoff = first.payload.dropoff;
    } catch (_) { /* an auditor does not see drop-off points */ }
  }));
  render();
}

// Settlements ------------------------------------------------------------------

async function showSettlements() {
  const list = await restaurants();
  fillRestaurantSelect($('st-restaurant'), list);
  if (!$('st-from').value) {
    const today = new Date();
    $('st-to').value = isoDay(today);
    $('st-from').value = isoDay(new Date(today.getTime() - 6 * 86400000));
  }
  const range = () => ({ from: $('st-from').value, to: $('st-to').value, restaurant: $('st-restaurant').value });
  const load = async () => {
    const { from, to, restaurant } = range();
    const ids = restaurant ? [restaurant] : list.map((r) => r.id);
    const rows = [];
    for (const id of ids) {
      const page = await apiJson(`/v1/settlements/restaurants/${id}?from=${from}&to=${to}`);
      rows.push(...page.items);
    }
    rows.sort((a, b) => (a.business_day < b.business_day ? 1 : a.business_day > b.business_day ? -1 : restaurantName(a.restaurant_id).localeCompare(restaurantName(b.restaurant_id))));
    const table = $('st-table');
    clear(table);
    const heads = ['Day', 'Restaurant', 'Orders', 'Gross sales', 'Tax', 'Tips', 'Commission', 'Provider fees', 'Refunds', 'Cash', 'Net payable'];
    table.appendChild(el('tr', {}, ...heads.map((h, i) => el('th', { class: i >= 2 ? 'num' : null, text: h }))));
    if (rows.length === 0) table.appendChild(el('tr', {}, el('td', { colspan: heads.length, class: 'muted', text: 'No settled orders in this range.' })));
    for (const r of rows) {
      const m = (v) => el('td', { class: 'num', text: money(v, r.currency) });
      table.appendChild(el('tr', {},
        el('td', { text: r.business_day }), el('td', { text: restaurantName(r.restaurant_id) }),
        el('td', { class: 'num', text: String(r.orders) }),
        m(r.gross_sales_minor), m(r.tax_minor), m(r.tips_minor), m(r.commission_minor), m(r.provider_fees_minor),
        m(r.refunds_minor), m(r.cash_collected_minor), m(r.net_payable_minor)));
    }
  };
  $('st-load').onclick = () => load().catch(explain);
  $('st-csv').onclick = async () => {
    const { from, to, restaurant } = range();
    const q = new URLSearchParams({ from, to });
    if (restaurant) q.set('restaurant_id', restaurant);
    try {
      const blob = await (await api(`/v1/settlements/export.csv?${q}`)).blob();
      const url = URL.createObjectURL(blob);
      const a = el('a', { href: url, download: `settlements-${from}-${to}.csv` });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) { explain(e); }
  };
  $('st-reconcile').onclick = async () => {
    const { from, to } = range();
    const out = $('st-recon');
    out.textContent = 'Reconciling…';
    try {
      const report = await apiJson(`/v1/reconciliation/settlements?from=${from}&to=${to}`);
      clear(out);
      const s = report.summary;
      out.appendChild(el('p', { class: s.breaks === 0 ? 'ok' : 'bad', text: s.breaks === 0
        ? `Clean: the read model matches the events to the cent (${s.restaurant_days_from_events} restaurant-days, ${s.provider_days_from_events} provider-days).`
        : `${s.breaks} break(s): ${Object.entries(s.breaks_by_kind).map(([k, v]) => `${k} ${v}`).join(', ')}` }));
      const net = Object.entries(s.net_payable_from_events || {}).map(([c, v]) => money(v, c)).join(' · ');
      if (net) out.appendChild(el('p', { class: 'muted', text: `Net payable recomputed from events: ${net}` }));
      if (report.breaks.length) {
        const t = el('table', { class: 'list small' }, el('tr', {}, ...['Kind', 'Subject', 'Day', 'Differences'].map((h) => el('th', { text: h }))));
        for (const b of report.breaks.slice(0, 50)) {
          t.appendChild(el('tr', {}, el('td', { text: b.kind }), el('td', { class: 'mono', text: b.subject }), el('td', { text: b.day || '' }),
            el('td', { class: 'mono', text: JSON.stringify(b.diffs) })));
        }
        out.appendChild(t);
      }
    } catch (e) { out.textContent = ''; explain(e); }
  };
  await load();
}

// Health -------------------------------------------------------------------------

async function showHealth() {
  const refresh = async () => {
    const [relay, consumers] = await Promise.all([apiJson('/v1/relay/status'), apiJson('/v1/projectors/status')]);
    const rt = $('health-relay');
    clear(rt);
    rt.appendChild(el('tr', {}, ...['Relay', 'Position', 'Events behind', 'Seconds behind', 'Checkpoint moved'].map((h) => el('th', { text: h }))));
    if (relay.items.length === 0) rt.appendChild(el('tr', {}, el('td', { colspan: 5, class: 'muted', text: 'No relay has published yet.' })));
    for (const r of relay.items) {
      rt.appendChild(el('tr', {}, el('td', { text: r.relay_name }), el('td', { class: 'mono', text: r.position }),
        el('td', { class: 'num ' + (r.events_behind > 100 ? 'warn' : ''), text: String(r.events_behind) }),
        el('td', { class: 'num', text: r.seconds_behind.toFixed(1) }), el('td', { text: dateTime(r.updated_at) })));
    }
    const ct = $('health-consumers');
    clear(ct);
    ct.appendChild(el('tr', {}, ...['Consumer', 'State', 'Events behind', 'Seconds behind', 'Heartbeat age', 'Kafka lag', 'Applied', 'Instances', 'Last error'].map((h) => el('th', { text: h }))));
    for (const p of consumers.items) {
      const cls = p.state === 'following' ? 'ok' : (p.state === 'stalled' || p.state === 'stopped') ? 'bad' : 'warn';
      ct.appendChild(el('tr', {}, el('td', { text: p.projector }), el('td', { class: cls, text: p.state }),
        el('td', { class: 'num', text: String(p.events_behind) }), el('td', { class: 'num', text: p.seconds_behind.toFixed(1) }),
        el('td', { class: 'num', text: p.heartbeat_age_seconds === null || p.heartbeat_age_seconds === undefined ? '–' : `${p.heartbeat_age_seconds.toFixed(1)} s` }),
        el('td', { class: 'num', text: String(p.kafka_events_behind) }), el('td', { class: 'num', text: String(p.events_applied) }),
        el('td', { class: 'mono', text: (p.instances || []).join(' ') }), el('td', { class: 'bad', text: p.last_error || '' })));
    }
    $('health-updated').textContent = `updated ${time(new Date().toISOString())}`;
  };
  await refresh();
  pageTimers.push(setInterval(() => refresh().catch(explain), 3000));
}

// ---- router ------------------------------------------------------------------------

function show(sectionId) {
  for (const s of document.querySelectorAll('section.page')) s.classList.toggle('hidden', s.id !== sectionId);
}

// Each navigation gets a number; a page that finishes loading after the user
// (or a test) has already moved on must not mark the document ready or show
// its errors.
let routeGeneration = 0;

async function route() {
  const generation = ++routeGeneration;
  stopPage();
  banner(null);
  const c = claims();
  const signedIn = !!token();
  $('signout').classList.toggle('hidden', !signedIn);
  $('who').textContent = c ? `${c.role} · ${c.sub}` : '';
  if (!signedIn) { show('signin'); return; }
  const hash = location.hash.replace(/^#/, '') || 'board';
  const [page, arg] = hash.split('/');
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.page === page);
  pageAbort = new AbortController();
  const signal = pageAbort.signal;
  document.body.dataset.page = page;
  try {
    switch (page) {
      case 'order': show('page-order'); await showOrder(arg); break;
      case 'map': show('page-map'); await showMap(signal); break;
      case 'settlements': show('page-settlements'); await showSettlements(); break;
      case 'health': show('page-health'); await showHealth(); break;
      default: show('page-board'); $('board-restaurant').onchange = route; $('board-status').onchange = route; await showBoard(signal); break;
    }
    if (generation === routeGeneration) document.body.dataset.ready = page;
  } catch (e) {
    if (generation !== routeGeneration) return;
    document.body.dataset.ready = page;
    if (e instanceof ApiError && e.status === 403) for (const s of document.querySelectorAll('section.page')) s.classList.add('hidden');
    explain(e);
  }
}

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const t = $('token-input').value.trim();
  if (!t) return;
  sessionStorage.setItem(TOKEN_KEY, t);
  $('token-input').value = '';
  if (!location.hash || location.hash === '#') location.hash = '#board'; else route();
});
$('signout').addEventListener('click', () => signOut());
window.addEventListener('hashchange', () => { takeTokenFromHash(); route(); });
takeTokenFromHash();
route();
