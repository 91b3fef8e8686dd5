// The chat page: a WebSocket to the bridge, and what Chat\ChatController
// pushes back through it (JSON: welcome, join, message, leave, error).
//
// Query string of the page:
//   ws    the bridge's WebSocket URL (default ws://<this page's host>:9502/)
//   name  your name (default: the controller names you guest-<fd>)
//   room  the room to join (default: lobby)
(() => {
  'use strict';

  const params = new URLSearchParams(location.search);
  const status = document.getElementById('status');
  const messages = document.getElementById('messages');
  const form = document.getElementById('composer');
  const input = document.getElementById('input');
  const send = document.getElementById('send');
  let me = null; // the welcome message: our fd, name and room

  function bridgeURL() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = new URL(params.get('ws') || `${scheme}//${location.hostname || '127.0.0.1'}:9502/`);
    for (const key of ['name', 'room']) {
      if (params.get(key)) url.searchParams.set(key, params.get(key));
    }
    return url;
  }

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function setReady(ready) {
    input.disabled = !ready;
    send.disabled = !ready;
  }

  // add appends a line; parts are [className, text] pairs, set as text
  // (never as HTML: names and messages come from other people).
  function add(className, parts, fd) {
    const li = document.createElement('li');
    li.className = className;
    if (fd !== undefined) li.dataset.fd = String(fd);
    for (const [cls, text] of parts) {
      const span = document.createElement('span');
      span.className = cls;
      span.textContent = text;
      li.append(span);
    }
    messages.append(li);
    li.scrollIntoView({ block: 'end' });
  }

  function onMessage(m) {
    switch (m.type) {
      case 'welcome': {
        me = m;
        const names = m.members.map((x) => x.name).join(', ');
        add('notice', [['text', `Welcome, ${m.name}! In ${m.room}: ${names}`]]);
        setStatus('ready', `${m.name} (#${m.fd}) in ${m.room}`);
        setReady(true);
        input.focus();
        break;
      }
      case 'join':
        add('notice', [['text', `${m.name} joined`]], m.fd);
        break;
      case 'leave':
        add('notice', [['text', `${m.name} left`]], m.fd);
        break;
      case 'message':
        add(me && m.fd === me.fd ? 'msg mine' : 'msg', [['name', m.name], ['text', m.text]], m.fd);
        break;
      case 'error':
        add('notice error', [['text', m.text]]);
        break;
      default:
        add('notice', [['text', JSON.stringify(m)]]);
    }
  }

  const url = bridgeURL();
  let opened = false;
  setStatus('connecting', `connecting to ${url.host}…`);
  const ws = new WebSocket(url);
  ws.onopen = () => {
    opened = true;
    setStatus('open', 'connected, waiting for the chat to answer…');
  };
  ws.onmessage = (ev) => {
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch {
      add('notice', [['text', String(ev.data)]]);
      return;
    }
    onMessage(m);
  };
  ws.onclose = (ev) => {
    setReady(false);
    if (!opened) {
      setStatus('closed', `cannot connect to ${url.href}: is the bridge running, and does its WSBRIDGE_ALLOWED_ORIGINS allow ${location.origin}?`);
      return;
    }
    setStatus('closed', `disconnected (${ev.code}${ev.reason ? ': ' + ev.reason : ''})`);
  };

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (text === '' || ws.readyState !== WebSocket.OPEN) return;
    ws.send(text);
    input.value = '';
    input.focus();
  });
})();
