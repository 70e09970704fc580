// The taskpool dashboard: polls api/state and draws it. No framework and
// no build step; text is set with textContent, never parsed as HTML.
(function () {
  'use strict';

  var token = document.querySelector('meta[name="csrf-token"]').content;
  var readOnly = document.body.dataset.readonly === 'true';
  var refresh = 2000;
  var timer = null;

  function el(tag, attrs) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (k === 'text') e.textContent = attrs[k];
      else if (k === 'class') e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    for (var i = 2; i < arguments.length; i++) e.appendChild(arguments[i]);
    return e;
  }

  function td(text, cls) { return el('td', { text: String(text), class: cls || '' }); }

  function when(t) {
    if (!t) return '–';
    var d = new Date(t);
    var s = Math.round((d - Date.now()) / 1000);
    var rel = s >= 0 ? 'in ' + dur(s) : dur(-s) + ' ago';
    return d.toLocaleTimeString() + ' (' + rel + ')';
  }

  function dur(s) {
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + (s % 60) + 's';
    return Math.floor(s / 3600) + 'h' + Math.floor((s % 3600) / 60) + 'm';
  }

  function fill(id, rows, cols, make) {
    var body = document.querySelector('#' + id + ' tbody');
    body.replaceChildren();
    if (!rows || rows.length === 0) {
      body.appendChild(el('tr', {}, el('td', { text: 'none', class: 'empty', colspan: cols })));
      return;
    }
    rows.forEach(function (r) { body.appendChild(make(r)); });
  }

  function setText(id, v) { document.getElementById(id).textContent = String(v); }

  function setStatus(msg, bad) {
    var s = document.getElementById('status');
    s.textContent = msg;
    s.className = 'status' + (bad ? ' error' : '');
  }

  function render(s) {
    var queued = 0, inFlight = 0, max = 1;
    s.queues.forEach(function (q) { queued += q.depth; inFlight += q.in_flight; max = Math.max(max, q.depth); });
    setText('total-queued', queued);
    setText('total-running', s.running ? s.running.length : inFlight);
    setText('total-delayed', s.delayed.length);
    setText('total-processed', s.processed);
    setText('total-failed', s.failed);
    setText('total-dead', s.dead_total);

    fill('queues', s.queues, 5, function (q) {
      var bar = el('div', { class: 'bar' });
      bar.style.width = Math.round(200 * q.depth / max) + 'px';
      return el('tr', { 'data-priority': q.priority },
        td(q.priority), td(q.depth, 'num depth'), td(q.in_flight, 'num in-flight'),
        td(q.redelivered, 'num'), el('td', {}, bar));
    });
    var w = [];
    for (var typ in s.waiting_for_slot || {}) w.push(typ + ': ' + s.waiting_for_slot[typ]);
    setText('waiting', w.length ? 'Waiting for a concurrency slot: ' + w.join(', ') : '');

    var running = s.running || [];
    setText('count-running', s.running ? running.length : inFlight);
    fill('running', running, 4, function (t) {
      return el('tr', { 'data-id': t.id }, td(t.id), td(t.type), td(t.priority), td(t.attempt, 'num'));
    });
    setText('count-delayed', s.delayed.length);
    fill('delayed', s.delayed, 6, function (t) {
      return el('tr', { 'data-id': t.id }, td(t.id), td(t.type), td(t.priority), td(t.reason),
        td(t.attempt, 'num'), td(when(t.next_run)));
    });
    setText('count-periodic', s.periodic.length);
    fill('periodic', s.periodic, 4, function (p) {
      return el('tr', { 'data-id': p.id }, td(p.id), td(p.type), td(p.spec || ''), td(when(p.next_run)));
    });
    setText('count-dead', s.dead_total);
    fill('dead', s.dead, 6, function (d) {
      var actions = el('td', {});
      if (!s.read_only) {
        var rq = el('button', { text: 'Requeue', class: 'requeue' });
        rq.addEventListener('click', function () {
          act('requeue', { id: d.id }, 'Requeue dead letter ' + d.task_id + ' (' + d.type + ')?');
        });
        var del = el('button', { text: 'Delete', class: 'delete danger' });
        del.addEventListener('click', function () {
          act('delete', { id: d.id }, 'Delete dead letter ' + d.task_id + ' (' + d.type + ') for good?');
        });
        actions.appendChild(rq);
        actions.appendChild(document.createTextNode(' '));
        actions.appendChild(del);
      }
      return el('tr', { 'data-id': d.id },
        td(d.task_id), td(d.type), td(d.attempts, 'num'), td(d.error, 'err'),
        el('td', {}, el('pre', { text: d.payload })), actions);
    });

    chart('chart-throughput', s.history, function (p) { return p.throughput; }, '/s');
    chart('chart-latency', s.history, function (p) { return p.latency_ms; }, ' ms');
    chart('chart-depth', s.history, function (p) { return p.depth; }, '');
  }

  var NS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, text) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // chart draws the values of pts as a line over time, by hand.
  function chart(id, pts, value, unit) {
    var root = document.getElementById(id);
    root.replaceChildren();
    var W = 400, H = 140, L = 40, B = 18, T = 8;
    root.appendChild(svg('line', { class: 'axis', x1: L, y1: H - B, x2: W, y2: H - B }));
    root.appendChild(svg('line', { class: 'axis', x1: L, y1: T, x2: L, y2: H - B }));
    var data = (pts || []).filter(function (p) { return value(p) !== null && value(p) !== undefined; });
    if (data.length < 2) {
      root.appendChild(svg('text', { x: L + 8, y: H / 2 }, 'collecting… (keep the page open)'));
      return;
    }
    var t0 = Date.parse(data[0].t), t1 = Date.parse(data[data.length - 1].t);
    var vmax = 0;
    data.forEach(function (p) { vmax = Math.max(vmax, value(p)); });
    if (vmax === 0) vmax = 1;
    var x = function (p) { return L + (W - L - 4) * (Date.parse(p.t) - t0) / Math.max(1, t1 - t0); };
    var y = function (p) { return H - B - (H - B - T) * value(p) / vmax; };
    var line = data.map(function (p) { return x(p).toFixed(1) + ',' + y(p).toFixed(1); }).join(' ');
    root.appendChild(svg('polygon', { class: 'area', points: L + ',' + (H - B) + ' ' + line + ' ' + x(data[data.length - 1]).toFixed(1) + ',' + (H - B) }));
    root.appendChild(svg('polyline', { class: 'line', points: line }));
    root.appendChild(svg('text', { x: 2, y: T + 8 }, fmt(vmax) + unit));
    root.appendChild(svg('text', { x: 2, y: H - B }, '0'));
    root.appendChild(svg('text', { x: L, y: H - 4 }, dur(Math.round((t1 - t0) / 1000)) + ' ago'));
    root.appendChild(svg('text', { x: W - 24, y: H - 4 }, 'now'));
  }

  function fmt(v) { return v >= 100 ? Math.round(v).toString() : v >= 1 ? v.toFixed(v >= 10 ? 1 : 2) : v.toPrecision(2); }

  function act(name, body, question) {
    if (readOnly || !window.confirm(question)) return;
    fetch('api/dead/' + name, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-Taskpool-CSRF': token },
      body: JSON.stringify(body || {}),
      credentials: 'same-origin',
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) throw new Error(j.error || r.statusText);
        setStatus(name + ' done');
      });
    }).catch(function (e) {
      setStatus(name + ' failed: ' + e.message, true);
    }).then(load);
  }

  function load() {
    clearTimeout(timer);
    fetch('api/state', { cache: 'no-store', credentials: 'same-origin' }).then(function (r) {
      return r.json().then(function (s) {
        if (!r.ok) throw new Error(s.error || r.statusText);
        refresh = s.refresh_ms || refresh;
        render(s);
        document.body.dataset.loaded = 'true';
        setStatus('updated ' + new Date(s.now).toLocaleTimeString());
      });
    }).catch(function (e) {
      setStatus('error: ' + e.message, true);
    }).then(function () {
      timer = setTimeout(load, refresh);
    });
  }

  var purge = document.getElementById('purge');
  if (purge) {
    purge.addEventListener('click', function () {
      act('purge', {}, 'Delete every dead letter for good?');
    });
  }
  load();
})();
