// One websocket to one node, speaking docs/protocol.md: envelopes with ids, replies by `re`,
// pushes by `type`. Reconnecting (to another region, with the resume token) is the app's job.

import { wsUrl } from "./net.js";

const REQUEST_TIMEOUT_MS = 15000;
const OPEN_TIMEOUT_MS = 5000;

/** Close codes after which the client must not reconnect on its own (docs/protocol.md). */
export const FINAL_CLOSES = {
  4100: "logged_in_elsewhere",
  4101: "bad_token",
  4102: "disabled",
  4103: "protocol",
  4104: "moved",
};

export class ProtocolError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

export class Connection {
  /**
   * @param {{region: string, node: string, url: string}} region
   * @param onPush called with every server push (an object with `type`)
   * @param onClose called once with (code, reason) when the socket closes after opening
   */
  constructor(region, { onPush, onClose }) {
    this.region = region;
    this.onPush = onPush;
    this.onClose = onClose;
    this.ws = null;
    this.nextId = 1;
    this.waiting = new Map();
    this.closed = false;
    this.helloDone = false;
    this.retired = false; // closed on purpose by the app: its close is not news
  }

  /** Open the socket and say hello; resolves with the hello reply, rejects on any failure. */
  open(hello) {
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (error) => {
        if (!settled) {
          settled = true;
          reject(error);
        }
      };
      const timer = setTimeout(() => {
        fail(new ProtocolError("network", `${this.region.region}: no answer within ${OPEN_TIMEOUT_MS / 1000} s`));
        this.retire();
      }, OPEN_TIMEOUT_MS);
      let ws;
      try {
        ws = new WebSocket(wsUrl(this.region.url));
      } catch (error) {
        clearTimeout(timer);
        fail(new ProtocolError("network", String(error)));
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        this.request("hello", hello).then(
          (reply) => {
            clearTimeout(timer);
            settled = true;
            this.helloDone = true;
            resolve(reply);
          },
          (error) => {
            clearTimeout(timer);
            fail(error);
            this.retire();
          },
        );
      };
      ws.onmessage = (event) => this.receive(event.data);
      ws.onclose = (event) => {
        clearTimeout(timer);
        this.closed = true;
        for (const { reject: rejectOne } of this.waiting.values()) {
          rejectOne(new ProtocolError("disconnected", `connection closed (${event.code})`));
        }
        this.waiting.clear();
        if (!settled) fail(new ProtocolError("network", `${this.region.region}: connection failed (${event.code}${event.reason ? `: ${event.reason}` : ""})`));
        if (this.helloDone && !this.retired) this.onClose(event.code, event.reason);
      };
    });
  }

  receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message && Object.prototype.hasOwnProperty.call(message, "re") && this.waiting.has(message.re)) {
      const { resolve, reject } = this.waiting.get(message.re);
      this.waiting.delete(message.re);
      if (message.ok) resolve(message);
      else reject(new ProtocolError(message.error?.code || "error", message.error?.message || "refused"));
      return;
    }
    if (message && typeof message.type === "string") this.onPush(message);
  }

  /** Send one envelope; resolves with the reply (ok) or rejects with a ProtocolError. */
  request(type, fields = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new ProtocolError("disconnected", "not connected"));
    }
    const id = `c${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.waiting.delete(id)) reject(new ProtocolError("timeout", `no reply to ${type} within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      this.waiting.set(id, {
        resolve: (m) => { clearTimeout(timer); resolve(m); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      this.ws.send(JSON.stringify({ ...fields, id, type }));
    });
  }

  get isOpen() {
    return !this.closed && this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  /** Close on purpose (switching region, logging out): no onClose call. */
  retire() {
    this.retired = true;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "client closed");
  }
}
