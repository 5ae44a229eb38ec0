// The replay viewer: a finished game stepped ply by ply from the views the node computes
// (GET /api/replay/GID), with both hands shown.

import { $, fill, h } from "./dom.js";
import { describeMove, REASONS } from "./cards.js";
import { renderDecks, renderLastClaim, renderSeatInfo, renderTable } from "./board.js";

const PLAY_INTERVAL_MS = 700;

export class ReplayScreen {
  constructor({ onClose }) {
    this.data = null;
    this.ply = 0;
    this.timer = null;
    this.bottom = 0;
    $("#replay-first").addEventListener("click", () => this.go(0));
    $("#replay-prev").addEventListener("click", () => this.go(this.ply - 1));
    $("#replay-next").addEventListener("click", () => this.go(this.ply + 1));
    $("#replay-last").addEventListener("click", () => this.go(this.last()));
    $("#replay-play").addEventListener("click", () => this.toggle());
    $("#replay-slider").addEventListener("input", (event) => this.go(Number(event.target.value)));
    $("#replay-close").addEventListener("click", () => {
      this.stop();
      onClose();
    });
    document.addEventListener("keydown", (event) => {
      if ($("#screen-replay").hidden || !this.data) return;
      // Form fields (the slider included) handle their own keys.
      if (event.target instanceof HTMLInputElement || event.target instanceof HTMLSelectElement) return;
      const keys = { ArrowLeft: this.ply - 1, ArrowRight: this.ply + 1, Home: 0, End: this.last() };
      if (event.key in keys) {
        event.preventDefault();
        this.go(keys[event.key]);
      }
    });
  }

  /** Show `data` (the /api/replay answer); `me` is the viewer's name (drawn at the bottom). */
  open(data, me) {
    this.stop();
    this.data = data;
    const seat = data.names.findIndex((n) => n.toLowerCase() === (me || "").toLowerCase());
    this.bottom = seat >= 0 ? seat : 0;
    const slider = $("#replay-slider");
    slider.max = String(this.last());
    $("#replay-title").textContent = `Replay: ${data.names[0]} vs ${data.names[1]}`;
    fill($("#replay-moves"), data.moves.map((move, i) => h("li", {}, h("button", {
      type: "button",
      class: "link",
      dataset: { ply: String(i + 1) },
      text: describeMove(move, data.names[move.player]),
      on: { click: () => this.go(i + 1) },
    }))));
    this.go(0);
  }

  last() {
    return this.data ? this.data.views.length - 1 : 0;
  }

  go(ply) {
    if (!this.data) return;
    this.ply = Math.max(0, Math.min(this.last(), ply));
    const view = this.data.views[this.ply];
    const names = this.data.names;
    const screen = $("#screen-replay");
    screen.dataset.ply = String(this.ply);
    $("#replay-slider").value = String(this.ply);
    $("#replay-ply").textContent = `${this.ply} / ${this.last()}`;
    let status;
    if (this.ply === 0) status = `The deal. ${names[view.to_move]} moves first.`;
    else {
      const move = this.data.moves[this.ply - 1];
      const text = describeMove(move, names[move.player]);
      status = `Move ${this.ply}: ${text}.`;
    }
    if (view.result) {
      const r = view.result;
      status += r.winner === null ? ` Game over: a draw (${REASONS[r.reason] || r.reason}).` : ` ${names[r.winner]} won by ${REASONS[r.reason] || r.reason}.`;
    }
    $("#replay-status").textContent = status;
    const options = { names, you: null };
    fill($("#replay-table"), renderTable(view, { bottom: this.bottom, names, you: null }));
    fill($("#replay-seat-top"), renderSeatInfo(view, 1 - this.bottom, options));
    fill($("#replay-seat-bottom"), renderSeatInfo(view, this.bottom, options));
    fill($("#replay-decks"), renderDecks(view));
    fill($("#replay-claim"), renderLastClaim(view, options) || "");
    for (const item of $("#replay-moves").querySelectorAll("button")) {
      const current = Number(item.dataset.ply) === this.ply;
      item.classList.toggle("current", current);
      if (current) item.setAttribute("aria-current", "step");
      else item.removeAttribute("aria-current");
    }
    const current = $("#replay-moves button.current");
    if (current) current.scrollIntoView({ block: "nearest" });
    $("#replay-prev").disabled = this.ply === 0;
    $("#replay-first").disabled = this.ply === 0;
    $("#replay-next").disabled = this.ply === this.last();
    $("#replay-last").disabled = this.ply === this.last();
    if (this.ply === this.last()) this.stop();
  }

  toggle() {
    if (this.timer) this.stop();
    else {
      if (this.ply === this.last()) this.go(0);
      this.timer = setInterval(() => this.go(this.ply + 1), PLAY_INTERVAL_MS);
      $("#replay-play").textContent = "⏸ Pause";
    }
  }

  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    $("#replay-play").textContent = "▶ Play";
  }
}
