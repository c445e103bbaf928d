// The live feed: GET /stream read with fetch() and a streaming body reader,
// reconnecting with exponential backoff and resuming with Last-Event-ID so
// no alert change is lost while the connection was down.

import { apiUrl, ApiError, problemOf } from "./api.js";
import { SseParser } from "./sse.js";

const FIRST_DELAY_MS = 1000;
const MAX_DELAY_MS = 30000;

export function backoffDelay(attempt, serverRetryMs) {
  const base = serverRetryMs ?? FIRST_DELAY_MS;
  const delay = Math.min(MAX_DELAY_MS, base * 2 ** Math.min(attempt, 10));
  // Jitter: after an API restart, consoles do not all come back at once.
  return Math.round(delay * (0.75 + Math.random() * 0.5));
}

// onEvent({id, event, data}); onStatus(state, detail) with state in
// "connecting", "live", "waiting", "stopped"; onOpen(resumed) after each
// successful (re)connection.
export function openStream({ api, onEvent, onStatus, onOpen }) {
  const controller = new AbortController();
  let lastEventId = "";
  let stopped = false;
  let wake = null;

  const sleep = (ms) => new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => { clearTimeout(timer); resolve(); };
  });

  let wentLive = false;

  async function readOnce() {
    const headers = api.headers({ Accept: "text/event-stream" });
    if (lastEventId) headers["Last-Event-ID"] = lastEventId;
    const response = await fetch(apiUrl("stream"), {
      headers, signal: controller.signal, cache: "no-store",
    });
    if (!response.ok) throw new ApiError(await problemOf(response));
    wentLive = true;
    onStatus("live", "");
    onOpen(Boolean(lastEventId));
    const parser = new SseParser();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        for (const event of parser.push(value)) {
          if (event.id) lastEventId = event.id;
          onEvent(event);
        }
      }
    } finally {
      if (parser.retry !== null) serverRetry = parser.retry;
    }
  }

  let serverRetry = null;

  async function run() {
    let attempt = 0;
    while (!stopped) {
      onStatus("connecting", "");
      wentLive = false;
      try {
        await readOnce();
      } catch (error) {
        if (stopped || error.name === "AbortError") break;
        if (error instanceof ApiError && error.status === 401) {
          api.onUnauthorized(error);
          break;
        }
        if (error instanceof ApiError && error.status === 403) {
          onStatus("stopped", error.problem.detail);
          return;
        }
      }
      if (stopped) break;
      // A connection that worked resets the backoff; repeated failures lengthen it.
      attempt = wentLive ? 0 : attempt + 1;
      const delay = backoffDelay(attempt, serverRetry);
      onStatus("waiting", `reconnecting in ${Math.ceil(delay / 1000)} s`);
      await sleep(delay);
    }
    if (!stopped) return;
    onStatus("stopped", "");
  }

  run();
  return {
    stop() {
      stopped = true;
      controller.abort();
      if (wake) wake();
    },
  };
}
