// The game screen: the table, your hand, and the controls for your move, all driven by the
// `legal` list of the latest `game` push (nothing else is ever sent as a move).

import { $, fill, h, morph } from "./dom.js";
import { cardName, cardTile, moveLabel, REASONS, SCOUT, TACTICS, isTactic } from "./cards.js";
import { renderDecks, renderLastClaim, renderSeatInfo, renderTable } from "./board.js";
import { MoveHistory, describeTurn, turnMarks } from "./history.js";
import { renderSummary } from "./summary.js";
import { Clocks } from "./clock.js";
import {
  claimMove,
  claimableFlags,
  deckTargets,
  discardTarget,
  emptySelection,
  flagTargets,
  handChoices,
  passMove,
  returnCount,
  returnable,
  sameMove,
  scoutReturnMove,
} from "./moves.js";

const RATING_TRIES = 20;
const RATING_RETRY_MS = 500;
// The move list is fetched again while it is shorter than the position shown: the answer may
// come from a region that lags, or fail while the page fails over, and a finished game gets no
// later push that would ask again (its summary counted the moves of a stale list).
const MOVES_TRIES = 10;
const MOVES_RETRY_MS = 1000;

const PHASES = {
  claim: "claim flags",
  play: "play a card",
  draw: "draw a card",
  scout_draw: "draw (Scout)",
  scout_return: "put cards back (Scout)",
  over: "game over",
};

export class GameScreen {
  /**
   * @param {{move(gid: string, move: object): Promise<any>,
   *          request(type: string, fields: object): Promise<any>,
   *          fetchMoves(gid: string): Promise<any>, toLobby(): void, stopWatching(): void,
   *          replay(gid: string): void, replayUrl(gid: string): string,
   *          rematch(name: string): any, rematchOffer(name: string): any,
   *          rematchSent(name: string): boolean, accept(iid: string): any,
   *          decline(iid: string): any,
   *          ratingsOf(names: string[]): Promise<Map<string, any>>}} actions
   */
  constructor(actions) {
    this.actions = actions;
    this.push = null;
    this.sel = emptySelection();
    this.pending = false;
    this.confirmGiveUp = false;
    this.prevHand = new Map(); // gid -> hand before the latest push
    this.newCards = new Set();
    this.histories = new Map(); // gid -> MoveHistory
    this.fetching = new Set(); // gids whose move list is being fetched
    this.focusedAt = ""; // "gid:ply" of the position whose first control got the focus
    this.ratings = new Map(); // gid -> {before: Map, after: Map | null}
    this.opponentAway = false;
    this.connected = true;
    this.logged = null; // what the move log shows: {key: "gid|you", moves (the history's array), turns}
    this.clocks = new Clocks($("#clocks"));
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.visible() && (this.sel.card !== null || this.sel.returning.length || this.sel.claim.length)) {
        this.sel = emptySelection();
        this.render();
      }
    });
    $("#table-chat-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("#table-text");
      const text = input.value.trim();
      if (!text || !this.push) return;
      this.actions.request("chat", { game: this.push.game, text }).then(
        () => { input.value = ""; },
        (error) => this.error(`Message not sent: ${error.message}`),
      );
    });
  }

  visible() {
    return !$("#screen-game").hidden;
  }

  get gid() {
    return this.push?.game ?? null;
  }

  /** A new `game` push for the game on screen (or a different game: start over). */
  update(push) {
    const sameGame = this.push && this.push.game === push.game;
    const oldHand = sameGame ? this.push.view.hand : null;
    if (!sameGame) {
      this.noteRatings(push, "before");
      this.sel = emptySelection();
      this.confirmGiveUp = false;
      this.opponentAway = false;
      fill($("#table-chat"));
    }
    if (!sameGame || push.ply !== this.push.ply) this.sel = emptySelection();
    this.newCards = new Set(oldHand && push.view.hand ? push.view.hand.filter((c) => !oldHand.includes(c)) : []);
    this.push = push;
    this.pending = false;
    this.note(push);
    if (push.status === "finished" && !this.ratings.get(push.game)?.after) this.noteRatings(push, "after");
    $("#game-error").textContent = "";
    this.clocks.update(push);
    this.render();
  }

  /** Keep the move list up to date from the push's view (never the push's own `last_move`,
   *  which is not redacted for the other player); fetch the whole list after a gap. */
  note(push) {
    if (!this.histories.has(push.game)) this.histories.set(push.game, new MoveHistory());
    const history = this.histories.get(push.game);
    if (history.note(push.ply, push.view.last_move) || this.fetching.has(push.game)) return;
    this.fetchHistory(push.game, history, 1);
  }

  /** Fetch the game's whole move list into `history`; again after MOVES_RETRY_MS while it is
   *  still short of the position shown (MOVES_TRIES in all). */
  fetchHistory(gid, history, attempt) {
    this.fetching.add(gid);
    const shown = () => this.push?.game === gid;
    const again = () => {
      if (attempt < MOVES_TRIES && shown() && history.moves.length < this.push.ply) {
        setTimeout(() => this.fetchHistory(gid, history, attempt + 1), MOVES_RETRY_MS);
      } else {
        this.fetching.delete(gid);
      }
    };
    this.actions.fetchMoves(gid).then(
      (moves) => {
        history.replace(moves.slice(0, shown() ? this.push.ply : moves.length));
        if (shown()) this.render();
        again();
      },
      again,
    );
  }

  /** The players' ratings when a game opens and once it is rated (the finished game reaches
   *  the log, and so the ratings, a moment after the last move). */
  async noteRatings(push, when) {
    const gid = push.game;
    if (!this.ratings.has(gid)) this.ratings.set(gid, { before: null, after: null, asking: false });
    const entry = this.ratings.get(gid);
    if (entry.asking && when === "after") return;
    entry.asking = when === "after";
    const names = push.players;
    for (let attempt = 0; attempt < RATING_TRIES; attempt += 1) {
      let now;
      try {
        now = await this.actions.ratingsOf(names);
      } catch {
        now = null;
      }
      const counted = (name) => (now?.get(name.toLowerCase())?.games ?? 0) > (entry.before?.get(name.toLowerCase())?.games ?? 0);
      if (now && (when === "before" || names.every(counted))) {
        entry[when] = now;
        if (when === "after" && this.push?.game === gid) this.renderSummary();
        return;
      }
      if (when === "before") return;
      await new Promise((resolve) => setTimeout(resolve, RATING_RETRY_MS));
    }
  }

  history() {
    return this.histories.get(this.push.game) || new MoveHistory();
  }

  /** The turn the table outlines and "Last turn" tells: the opponent's latest (a player's
   *  view), or the latest of anyone (a watcher's). */
  newsTurn() {
    const history = this.history();
    if (this.push.you === null) {
      const turns = history.turns();
      return turns[turns.length - 1] || null;
    }
    return history.lastTurnOf(1 - this.push.you);
  }

  who(seat) {
    if (!this.push) return "";
    return seat === this.push.you ? "you" : this.push.players[seat];
  }

  error(text) {
    $("#game-error").textContent = text;
  }

  setConnected(connected) {
    this.connected = connected;
    if (this.push) this.render();
  }

  opponent(state) {
    this.opponentAway = state === "dropped";
    if (this.push) this.render();
  }

  addChat(message) {
    const log = $("#table-chat");
    log.append(h("li", {}, h("strong", { text: `${message.from}: ` }), message.text));
    log.scrollTop = log.scrollHeight;
  }

  myTurn() {
    const p = this.push;
    return p && p.you !== null && p.status === "live" && p.to_move === p.you && p.legal.length > 0;
  }

  async send(move) {
    if (!this.push || this.pending) return;
    if (!this.push.legal.some((m) => sameMove(m, move))) {
      this.error("That move is not legal now.");
      return;
    }
    const { game, ply } = this.push;
    this.pending = true;
    this.render();
    try {
      await this.actions.move(game, move);
      // The new position is pushed right after the reply; should it not come, do not stay stuck.
      setTimeout(() => {
        if (this.pending && this.push.game === game && this.push.ply === ply) {
          this.pending = false;
          this.render();
        }
      }, 5000);
    } catch (error) {
      this.pending = false;
      if (error.code === "not_replicated") {
        this.error("Your move is stored in this region but other regions have not confirmed it yet; it will reach them.");
      } else if (error.code === "disconnected" || error.code === "timeout") {
        this.error("The connection dropped before your move was confirmed; once reconnected, the board shows whether it was made.");
      } else {
        this.error(`Move refused: ${error.message}`);
      }
      this.render();
    }
  }

  // --- selection handlers -------------------------------------------------------------

  onHand(card) {
    const p = this.push;
    if (p.view.phase === "scout_return") {
      const list = this.sel.returning;
      const at = list.indexOf(card);
      if (at >= 0) list.splice(at, 1);
      else if (list.length < returnCount(p.legal)) list.push(card);
      this.render();
      return;
    }
    this.sel = { ...emptySelection(), card: this.sel.card === card ? null : card };
    this.render();
    if (this.sel.card !== null) focusFirst("#table .target, #table .card.choice, #decks [data-deck], #controls [data-discard]");
  }

  onTable(card, move) {
    if (move) {
      this.send(move);
      return;
    }
    this.sel = { ...this.sel, target: card };
    this.render();
    focusFirst("#table .target, #controls [data-discard]");
  }

  onFlag(flag, move) {
    this.send(move);
  }

  onClaim(flag) {
    const list = this.sel.claim;
    const at = list.indexOf(flag);
    if (at >= 0) list.splice(at, 1);
    else list.push(flag);
    this.render();
    const again = document.querySelector(`[data-claim-flag="${flag}"]`);
    if (again instanceof HTMLElement) again.focus();
  }

  // --- drawing ------------------------------------------------------------------------

  render() {
    const p = this.push;
    if (!p) return;
    const view = p.view;
    const you = p.you;
    const bottom = you === null ? 0 : you;
    const names = p.players;
    const mine = this.myTurn() && !this.pending && this.connected;
    const legal = mine ? p.legal : [];
    const active = document.activeElement;
    const focusKey = active instanceof HTMLElement ? focusSignature(active) : null;

    const screen = $("#screen-game");
    screen.dataset.game = p.game;
    screen.dataset.ply = String(p.ply);
    screen.dataset.status = p.status;
    screen.dataset.myTurn = String(this.myTurn());
    screen.dataset.phase = view.phase;
    screen.dataset.role = you === null ? "watcher" : "player";

    $("#game-title").textContent = you === null
      ? `Watching ${names[0]} vs ${names[1]}`
      : `You (${names[you]}) vs ${names[1 - you]}`;
    $("#turn").textContent = this.turnText();
    $("#turn").className = ["turn", mine ? "mine" : "", p.result ? "over" : ""].join(" ");

    const play = mine
      ? {
          legal,
          sel: this.sel,
          claimable: view.phase === "claim" ? claimableFlags(legal) : [],
          onTable: (card, move) => this.onTable(card, move),
          onFlag: (flag, move) => this.onFlag(flag, move),
          onClaim: (flag) => this.onClaim(flag),
        }
      : null;
    const news = this.newsTurn();
    morph($("#table"), renderTable(view, { bottom, names, you, play, marks: turnMarks(news) }));
    const opponentNote = you !== null && this.opponentAway
      ? h("span", { class: "badge warn", text: `${names[1 - you]}'s connection dropped; they have 60 s to come back` })
      : null;
    morph($("#seat-top"), renderSeatInfo(view, 1 - bottom, { names, you }), opponentNote);
    morph($("#seat-bottom"), renderSeatInfo(view, bottom, { names, you }));
    this.renderHand(view, legal, mine);
    this.renderControls(view, legal, mine);
    morph($("#decks"), renderDecks(view, {
      decks: mine ? deckTargets(legal, this.sel) : new Map(),
      onDeck: (move) => this.send(move),
    }));
    this.renderSummary();
    this.renderLastTurn(view, news);
    morph($("#last-claim"), renderLastClaim(view, { names, you }) || "");
    this.renderLegal(legal, mine);
    this.renderLog(view);
    dropStaleFocus(focusKey);
    if (focusKey) restoreFocus(focusKey);
    if (mine) this.focusFirstControl(view);
  }

  /** Who won and how, the flags, the moves, the replay link and the rematch: once finished. */
  renderSummary() {
    const p = this.push;
    const box = $("#summary");
    const over = p.status === "finished" && p.result;
    box.hidden = !over;
    if (!over) {
      fill(box);
      return;
    }
    const opponent = p.you === null ? null : p.players[1 - p.you];
    const rematch = opponent === null ? null : {
      offer: this.actions.rematchOffer(opponent),
      sent: this.actions.rematchSent(opponent),
      onRematch: () => this.actions.rematch(opponent),
      onAccept: (iid) => this.actions.accept(iid),
      onDecline: (iid) => this.actions.decline(iid),
    };
    const wasOpen = box.querySelector(".summary-moves")?.open;
    const ratings = this.ratings.get(p.game);
    fill(box, renderSummary(p, this.history(), { rematch, ratings, replayUrl: this.actions.replayUrl(p.game) }));
    if (wasOpen) box.querySelector(".summary-moves").open = true;
  }

  /** The keyboard path through a turn: when a new position is yours and the focus was lost
   *  (the control used last is gone), it goes to the first control of the step: a flag to
   *  claim, a card to play, a deck to draw from. Typing in a field is never interrupted. */
  focusFirstControl(view) {
    const at = `${this.push.game}:${this.push.ply}`;
    if (this.focusedAt === at || !this.visible()) return;
    this.focusedAt = at;
    const active = document.activeElement;
    if (active && active !== document.body && active.isConnected) return; // still on something
    const first = {
      claim: "#table [data-claim-flag]",
      play: "#hand-area .card:not(:disabled), #controls [data-action=pass]",
      draw: "#decks [data-deck]",
      scout_draw: "#decks [data-deck]",
      scout_return: "#hand-area .card:not(:disabled)",
    }[view.phase];
    if (first) focusFirst(first);
  }

  turnText() {
    const p = this.push;
    const view = p.view;
    if (p.result) {
      const r = p.result;
      if (r.winner === null || r.winner === undefined) return `Game over: a draw (${REASONS[r.reason] || r.reason}).`;
      const winner = r.winner === p.you ? "You won" : `${p.players[r.winner]} won`;
      return `Game over: ${winner} by ${REASONS[r.reason] || r.reason}.`;
    }
    if (p.status === "saved") return "The game was saved. Resume it from your saved games.";
    if (p.status === "parked") return "The game was parked after a merge. Resume it from your saved games.";
    if (view.paused) return "The game is paused.";
    if (!this.connected) return "Reconnecting…";
    const phase = PHASES[view.phase] || view.phase;
    if (p.you === null) return `${p.players[p.to_move]} to move (${phase}).`;
    if (this.pending) return "Sending your move…";
    if (p.to_move === p.you) return `Your move: ${phase}.`;
    return `Waiting for ${p.players[p.to_move]} (${phase}).`;
  }

  renderHand(view, legal, mine) {
    const area = $("#hand-area");
    if (this.push.you === null) {
      morph(area);
      return;
    }
    const hand = view.hand || [];
    const scoutReturn = view.phase === "scout_return" && mine;
    const choices = mine ? handChoices(legal) : new Map();
    const back = scoutReturn ? returnable(legal) : new Set();
    const known = new Map((view.scout_known || []).map((k) => [k.card, k.deck]));
    const tiles = hand.map((card) => {
      const order = this.sel.returning.indexOf(card);
      const enabled = scoutReturn ? back.has(card) : choices.has(card);
      const classes = [
        this.newCards.has(card) ? "new" : "",
        this.sel.card === card || order >= 0 ? "selected" : "",
        enabled && this.sel.card === null ? "playable" : "",
      ];
      const label = `${cardName(card)}${this.newCards.has(card) ? " (new)" : ""}` +
        (isTactic(card) ? `: ${TACTICS[card].help}` : "") +
        (order >= 0 ? `, put back ${order + 1}` : "");
      const tile = cardTile(card, {
        classes,
        label,
        disabled: !enabled,
        pressed: this.sel.card === card || order >= 0,
        onClick: () => this.onHand(card),
      });
      tile.dataset.handCard = String(card);
      if (order >= 0) tile.append(h("span", { class: "order", text: String(order + 1) }));
      return tile;
    });
    morph(
      area,
      h("h3", { class: "hand-title", text: "Your hand" }),
      h("div", { class: "hand", attrs: { role: "group", "aria-label": "Your hand" } }, tiles),
      known.size
        ? h("p", { class: "muted" }, `You know ${[...known].map(([c, d]) => `${cardName(c)} is on the ${d} deck`).join("; ")}.`)
        : null,
    );
  }

  renderControls(view, legal, mine) {
    const p = this.push;
    const box = $("#controls");
    const parts = [];
    if (mine) {
      parts.push(h("p", { class: "hint", id: "hint", text: this.hint(view, legal) }));
      const buttons = [];
      if (view.phase === "claim") {
        const chosen = claimMove(legal, this.sel.claim);
        buttons.push(h("button", {
          type: "button",
          class: "primary",
          dataset: { action: "claim" },
          disabled: !chosen || this.sel.claim.length === 0,
          text: this.sel.claim.length ? `Claim flag${this.sel.claim.length > 1 ? "s" : ""} ${[...this.sel.claim].sort((a, b) => a - b).join(", ")}` : "Claim selected flags",
          on: { click: () => chosen && this.send(chosen) },
        }));
        const none = claimMove(legal, []);
        if (none) buttons.push(h("button", { type: "button", dataset: { action: "no-claim" }, text: "Continue without claiming", on: { click: () => this.send(none) } }));
      }
      const pass = passMove(legal);
      if (pass) buttons.push(h("button", { type: "button", dataset: { action: "pass" }, text: "Pass", on: { click: () => this.send(pass) } }));
      const discard = discardTarget(legal, this.sel);
      if (discard) buttons.push(h("button", { type: "button", dataset: { discard: "1" }, text: `Discard ${cardName(discard.card)}`, on: { click: () => this.send(discard) } }));
      if (view.phase === "scout_return") {
        const need = returnCount(legal);
        const ret = this.sel.returning.length === need ? scoutReturnMove(legal, this.sel.returning) : null;
        buttons.push(h("button", {
          type: "button",
          class: "primary",
          dataset: { action: "scout-return" },
          disabled: !ret,
          text: `Put back ${this.sel.returning.length}/${need}`,
          on: { click: () => ret && this.send(ret) },
        }));
      }
      if (this.sel.card !== null || this.sel.returning.length || this.sel.claim.length) {
        buttons.push(h("button", { type: "button", text: "Cancel (Esc)", on: { click: () => { this.sel = emptySelection(); this.render(); } } }));
      }
      parts.push(h("div", { class: "buttons" }, buttons));
    }
    const tail = [];
    if (p.you !== null && p.status === "live") {
      if (this.confirmGiveUp) {
        tail.push(
          h("span", { text: "Really give up this game? " }),
          h("button", { type: "button", class: "danger", dataset: { action: "give-up-yes" }, text: "Yes, give up", on: { click: () => this.giveUp() } }),
          h("button", { type: "button", text: "No, play on", on: { click: () => { this.confirmGiveUp = false; this.render(); } } }),
        );
      } else {
        tail.push(
          h("button", { type: "button", dataset: { action: "save" }, text: "Save and leave", title: "Pause the game into your saved games; either of you can resume it later", on: { click: () => this.save() } }),
          h("button", { type: "button", class: "danger", dataset: { action: "give-up" }, text: "Give up", on: { click: () => { this.confirmGiveUp = true; this.render(); } } }),
        );
      }
    } else if (p.you === null && p.status === "live") {
      tail.push(h("button", { type: "button", dataset: { action: "leave" }, text: "Stop watching", on: { click: () => this.actions.stopWatching() } }));
    }
    if (p.status !== "live") {
      tail.push(h("button", { type: "button", class: "primary", dataset: { action: "lobby" }, text: "Back to the lobby", on: { click: () => this.actions.toLobby() } }));
      if (p.status === "finished" && p.you !== null) {
        tail.push(h("button", { type: "button", dataset: { action: "replay" }, text: "Replay this game", on: { click: () => this.actions.replay(p.game) } }));
      }
    }
    parts.push(h("div", { class: "buttons secondary" }, tail));
    morph(box, parts);
  }

  hint(view, legal) {
    const sel = this.sel;
    switch (view.phase) {
      case "claim":
        return "You have complete formations: select flags to claim (the ⚑ buttons), or continue without claiming.";
      case "draw":
        return "Draw a card from one of the decks.";
      case "scout_draw":
        return "Scout: draw your next card from either deck.";
      case "scout_return":
        return `Scout: choose ${returnCount(legal)} cards from your hand to put back, in order; the last one you choose ends on top of its deck.`;
      default:
        break;
    }
    if (sel.card === null) return passMove(legal) && !handChoices(legal).size ? "You have no card you can play: pass." : "Choose a card from your hand (or any move from the list).";
    const name = cardName(sel.card);
    if (sel.card === SCOUT) return "Scout: choose the deck for your first draw.";
    if (sel.card === 61) return sel.target === null ? "Traitor: choose one of your opponent's troops on an open flag." : `Traitor: choose the flag on your side for ${cardName(sel.target)}.`;
    if (sel.card === 62) return "Deserter: choose any opponent card on an open flag to discard.";
    if (sel.card === 63) return sel.target === null ? "Redeploy: choose one of your own cards on an open flag." : `Redeploy: choose a flag for ${cardName(sel.target)}, or discard it.`;
    const flags = flagTargets(legal, sel).map((t) => t.flag);
    return `Choose a flag for ${name}: ${flags.join(", ")} (the "Here" buttons).`;
  }

  /** The opponent's whole latest turn: claims (and whether they held), the card played, the
   *  draw; a watcher sees the latest turn of either player. */
  renderLastTurn(view, turn) {
    const el = $("#last-move");
    const p = this.push;
    $("#last-turn-title").textContent = p.you === null || !turn ? "Last turn" : `${p.players[1 - p.you]}'s last turn`;
    if (!turn) {
      el.textContent = this.history().moves.length || p.ply === 0 ? (p.you === null ? "No move yet." : `${p.players[1 - p.you]} has not moved yet.`) : "…";
      el.dataset.ply = "";
      return;
    }
    const text = describeTurn(turn, this.who(turn.player), view);
    const marks = turnMarks(turn);
    el.dataset.ply = String(turn.first);
    morph(el, `${sentence(text)}.`, marks.cards.size ? " " : "", [...marks.cards].map((c) => cardTile(c, { classes: ["small", "last"] })));
  }

  renderLegal(legal, mine) {
    const list = $("#legal-list");
    $("#legal-count").textContent = mine ? `(${legal.length})` : "";
    if (!mine) {
      morph(list, h("li", { class: "muted", text: this.push.you === null ? "You are watching." : "Not your move." }));
      return;
    }
    morph(list, legal.map((move) => h("li", {}, h("button", {
      type: "button",
      class: "link",
      dataset: { move: JSON.stringify(move) },
      text: moveLabel(move),
      on: { click: () => this.send(move) },
    }))));
  }

  /** Every turn so far, numbered by its first move; the latest is marked as the current one.
   *  Only the last turn shown and the turns after it are drawn again: an earlier turn is over.
   *  Drawing every turn on every push made each move of a long game cost more than the last
   *  (120 plies: 0.55 s of the page's 2.4 s of script in this function and its layout reads). */
  renderLog(view) {
    const history = this.history();
    const turns = history.turns();
    const log = $("#move-log");
    const key = `${this.push.game}|${this.push.you}`;
    const same = this.logged && this.logged.key === key && this.logged.moves === history.moves;
    const from = same ? Math.max(0, Math.min(this.logged.turns, turns.length) - 1) : 0;
    while (log.children.length > from) log.lastElementChild.remove();
    log.append(...turns.slice(from).map((turn, i) => {
      const current = from + i === turns.length - 1;
      return h("li", {
        class: current ? "current" : "",
        dataset: { ply: String(turn.first), player: String(turn.player) },
        attrs: { value: String(turn.first), "aria-current": current ? "step" : null },
      }, sentence(describeTurn(turn, this.who(turn.player), view)));
    }));
    this.logged = { key, moves: history.moves, turns: turns.length };
    const current = log.lastElementChild;
    if (current instanceof HTMLElement && log.offsetParent !== null) log.scrollTop = current.offsetTop - log.clientHeight + current.offsetHeight + 8;
  }

  async save() {
    try {
      await this.actions.request("save", { game: this.push.game });
    } catch (error) {
      this.error(`Could not save: ${error.message}`);
    }
  }

  async giveUp() {
    this.confirmGiveUp = false;
    try {
      await this.actions.request("give_up", { game: this.push.game });
    } catch (error) {
      this.error(`Could not give up: ${error.message}`);
      this.render();
    }
  }
}

/** "you played ..." starts a sentence as "You played ..."; names keep their case. */
function sentence(text) {
  return text.replace(/^you /, "You ");
}

/**
 * @param {HTMLElement} el
 * @returns {[string, string] | null}
 */
function focusSignature(el) {
  const d = el.dataset;
  for (const key of ["handCard", "targetFlag", "claimFlag", "deck", "action", "move", "card", "discard"]) {
    if (d[key] !== undefined) return [key, d[key]];
  }
  return null;
}

// The parts of the game screen `render` patches in place (`morph`).
const REDRAWN = "#table, #seat-top, #seat-bottom, #hand-area, #controls, #decks, #last-claim, #last-move, #legal-list, #move-log";

/** A patched element keeps the focus even when it now stands for something else (the hand's
 *  third button, now another card) or cannot be used (a card of the hand in the draw phase).
 *  Focus follows the thing, as when every element was new: such an element, or one that
 *  `focusSignature` cannot name, loses it; `restoreFocus` and `focusFirstControl` then place it. */
function dropStaleFocus(before) {
  const active = document.activeElement;
  if (!(active instanceof HTMLElement) || !active.closest(REDRAWN)) return;
  const now = focusSignature(active);
  const renamed = !before || !now || now[0] !== before[0] || now[1] !== before[1];
  if (renamed || active.matches(":disabled")) active.blur();
}

function restoreFocus([key, value]) {
  const attr = key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  const el = /** @type {(HTMLElement & {disabled?: boolean}) | null} */ (
    document.querySelector(`#screen-game [data-${attr}="${CSS.escape(value)}"]`)
  );
  if (el && !el.disabled && document.activeElement !== el) el.focus();
}

function focusFirst(selector) {
  const el = document.querySelector(selector);
  if (el) el.focus();
}
