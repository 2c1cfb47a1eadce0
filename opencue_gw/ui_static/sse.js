// Reading the gateway's event stream with fetch, so the token travels in the
// Authorization header (EventSource cannot send headers, and a token in the URL would be
// written to access logs and browser history). Reconnects with Last-Event-ID.

export function parseEvents(state, text) {
  // Feed text; returns complete events. `state` keeps the partial line and event.
  const events = [];
  state.buffer += text;
  let cut;
  while ((cut = state.buffer.indexOf("\n")) >= 0) {
    const line = state.buffer.slice(0, cut).replace(/\r$/, "");
    state.buffer = state.buffer.slice(cut + 1);
    if (line === "") {
      if (state.id !== null) state.lastId = state.id;
      if (state.data.length) {
        let data = state.data.join("\n");
        try { data = JSON.parse(data); } catch (e) { /* plain text */ }
        events.push({ type: state.type || "message", id: state.id, data });
      }
      state.data = []; state.type = ""; state.id = null;
      continue;
    }
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") state.data.push(value);
    else if (name === "event") state.type = value;
    else if (name === "id") state.id = value;
    else if (name === "retry" && /^\d+$/.test(value)) state.retry = Number(value);
  }
  return events;
}

// Follow `url` until stop() is called: onEvent(event) for each event, onStatus(text, ok)
// when the connection changes, onRefused(status, body) for an answer other than 200
// that retrying will not fix (401, 403, 400).
export function follow(url, token, { onEvent, onStatus, onRefused }) {
  const controller = new AbortController();
  const state = { buffer: "", data: [], type: "", id: null, lastId: null, retry: 2000 };
  let stopped = false;
  let failures = 0;

  async function once() {
    const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
    if (state.lastId) headers["Last-Event-ID"] = state.lastId;
    const answer = await fetch(url, { headers, signal: controller.signal, cache: "no-store" });
    if (answer.status !== 200) {
      const body = await answer.json().catch(() => ({}));
      if (answer.status === 503 || answer.status === 429) throw new Error(body.message || answer.status);
      onRefused(answer.status, body);
      stopped = true;
      return;
    }
    failures = 0;
    onStatus("live", true);
    const reader = answer.body.getReader();
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      for (const event of parseEvents(state, decoder.decode(value, { stream: true }))) {
        onEvent(event);
      }
    }
  }

  (async () => {
    while (!stopped) {
      try {
        await once();
      } catch (error) {
        if (stopped) return;
        failures += 1;
      }
      if (stopped) return;
      onStatus("reconnecting", false);
      await new Promise((r) => setTimeout(r, Math.min(30000, state.retry * Math.max(1, failures))));
    }
  })();

  return { stop() { stopped = true; controller.abort(); } };
}
