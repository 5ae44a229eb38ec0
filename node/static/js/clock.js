// The game clocks (games with a time control, docs/protocol.md "Time controls"): each player's
// time as the latest `game` push gave it, the running one counted down from when the push came.
// The server decides a time-out; this only shows the time ticking and the flag falling to 0:00.

import { h, morph } from "./dom.js";

const TICK_MS = 200;
const LOW_MS = 10000; // shown in red below this

/** The invitation presets (none, 5+0, 10+0, 10+5): value "initial_s+increment_s". */
export const PRESETS = [
  ["", "No clock"],
  ["300+0", "5+0"],
  ["600+0", "10+0"],
  ["600+5", "10+5"],
];

/** A preset's value as invite's `clock` field (null: no clock). */
export function clockField(value) {
  if (!value) return null;
  const [initial, increment] = value.split("+").map(Number);
  return { initial_s: initial, increment_s: increment };
}

/** "10+5" for an invitation's or a push's time control (null: none). */
export function clockLabel(clock) {
  if (!clock) return "";
  const initial = clock.initial_s ?? Math.round(clock.initial_ms / 1000);
  const increment = clock.increment_s ?? Math.round(clock.increment_ms / 1000);
  const start = initial % 60 === 0 ? `${initial / 60}` : `${initial}s`;
  return `${start}+${increment}`;
}

/** "9:58", and tenths under 10 s ("0:07.3"). */
export function formatClock(ms) {
  const left = Math.max(0, ms);
  const minutes = Math.floor(left / 60000);
  const seconds = Math.floor((left % 60000) / 1000);
  const text = `${minutes}:${String(seconds).padStart(2, "0")}`;
  return left < LOW_MS ? `${text}.${Math.floor((left % 1000) / 100)}` : text;
}

export class Clocks {
  /** @param {HTMLElement} el */
  constructor(el) {
    this.el = el;
    this.push = null;
    this.at = 0; // performance.now() when the push arrived
    this.timer = 0;
  }

  /** A new game push: start (or stop) the ticking. */
  update(push) {
    this.push = push;
    this.at = performance.now();
    clearInterval(this.timer);
    this.timer = 0;
    const clock = push.clock;
    this.el.hidden = !clock;
    if (!clock) return;
    this.render();
    if (clock.running !== null && push.status === "live") this.timer = window.setInterval(() => this.render(), TICK_MS);
  }

  /** What seat `seat` has left now. */
  left(seat) {
    const clock = this.push.clock;
    const shown = clock.remaining_ms[seat];
    const running = clock.running === seat && this.push.status === "live";
    return running ? shown - (performance.now() - this.at) : shown;
  }

  /** Runs every TICK_MS while a clock runs: patched in place, so a tick changes the time's text
   *  and class, not the whole clock box. */
  render() {
    const p = this.push;
    if (!p || !p.clock) return;
    const order = p.you === null ? [0, 1] : [p.you, 1 - p.you];
    const timedOut = p.result?.reason === "time";
    morph(
      this.el,
      h("span", { class: "clock-label muted", text: clockLabel(p.clock) }),
      order.map((seat) => {
        const left = this.left(seat);
        const running = p.clock.running === seat && p.status === "live";
        const out = timedOut && p.result.winner !== seat;
        const name = seat === p.you ? "You" : p.players[seat];
        return h(
          "span",
          {
            class: ["clock", running ? "running" : "", left < LOW_MS ? "low" : "", out ? "out" : ""],
            dataset: { clockSeat: String(seat), running: String(running) },
            attrs: { role: "timer", "aria-label": `${name}: ${formatClock(left)}${running ? ", running" : ""}${out ? ", time is up" : ""}` },
          },
          h("span", { class: "clock-name", text: name }),
          h("span", { class: "clock-time", text: out ? "0:00" : formatClock(left) }),
        );
      }),
    );
  }
}
