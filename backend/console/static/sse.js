// A Server-Sent Events parser (the event-stream format of the HTML standard)
// for bodies read with fetch(): EventSource cannot send an Authorization
// header. Feed it decoded text in chunks of any size; it returns the events
// completed by each chunk.

export class SseParser {
  constructor() {
    this.buffer = "";
    this.data = [];
    this.eventType = "";
    this.lastEventId = "";
    this.retry = null; // milliseconds, when the server sent "retry:"
    this.pendingCR = false;
  }

  // Returns [{id, event, data}] for every event the text completes.
  push(text) {
    const events = [];
    let chunk = text;
    // A CR ending the previous chunk and an LF starting this one are one line end.
    if (this.pendingCR && chunk.startsWith("\n")) chunk = chunk.slice(1);
    this.pendingCR = false;
    this.buffer += chunk;
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer[i];
      if (c !== "\n" && c !== "\r") continue;
      const line = this.buffer.slice(start, i);
      if (c === "\r") {
        if (i + 1 === this.buffer.length) this.pendingCR = true;
        else if (this.buffer[i + 1] === "\n") i++;
      }
      start = i + 1;
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null; // a comment, e.g. ": keepalive"
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.eventType = value;
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    return null;
  }

  dispatch() {
    const type = this.eventType || "message";
    this.eventType = "";
    if (this.data.length === 0) return null;
    const data = this.data.join("\n");
    this.data = [];
    return { id: this.lastEventId, event: type, data };
  }
}
