// The end of a game, as a game site shows it: who won and how, the flags each side won, the
// moves, a link to the replay, and a rematch with colours swapped (the server gives the first
// move of a new game between the same two players to whoever moved second last time).

import { h } from "./dom.js";
import { listing } from "./cards.js";
import { describeTurn } from "./history.js";

/** The three adjacent flags that made a breakthrough for `seat`, or []. */
export function breakthroughFlags(view, seat) {
  const mine = view.flags.map((f) => f.claimed_by === seat);
  for (let i = 0; i + 2 < mine.length; i += 1) {
    if (mine[i] && mine[i + 1] && mine[i + 2]) return [i + 1, i + 2, i + 3];
  }
  return [];
}

function flagsOf(view, seat) {
  return view.flags.filter((f) => f.claimed_by === seat).map((f) => f.flag);
}

/** "1516 (+16)": the rating after the game and its change, "" until the game is rated. */
function ratingText(ratings, name) {
  const after = ratings?.after?.get(name.toLowerCase());
  if (!after) return "";
  const before = ratings.before?.get(name.toLowerCase());
  const was = before ? Number(before.exact) : after.games === 1 ? 1500 : null;
  if (was === null) return String(after.rating);
  const change = Math.round(Number(after.exact) - was);
  return `${after.rating} (${change >= 0 ? "+" : "−"}${Math.abs(change)})`;
}

/** "You won" / "bob won" / "A draw", and how, in words. */
export function outcome(view, result, names, you) {
  const who = (seat) => (seat === you ? "you" : names[seat]);
  const Who = (seat) => (seat === you ? "You" : names[seat]);
  if (result.winner === null || result.winner === undefined) {
    return { title: "A draw", how: "Stalemate: no card could be played or drawn and no claim could succeed any more." };
  }
  const winner = result.winner;
  const loser = 1 - winner;
  const title = `${Who(winner)} won`;
  if (result.reason === "breakthrough") {
    return { title, how: `By a breakthrough: three adjacent flags, ${listing(breakthroughFlags(view, winner).map(String))}.` };
  }
  if (result.reason === "flags") {
    return { title, how: `By five flags: ${listing(flagsOf(view, winner).map(String))}.` };
  }
  if (result.reason === "give_up") return { title, how: `${Who(loser)} gave up.` };
  if (result.reason === "time") return { title, how: `On time: ${who(loser)} ran out of time.` };
  return { title, how: `By ${result.reason}; ${who(loser)} lost.` };
}

/**
 * The summary panel. `history` is the game's MoveHistory; `rematch` is null (a watcher) or
 * {offer: the opponent's rematch invitation or null, onRematch(), onAccept(iid), onDecline(iid)};
 * `ratings` is {before, after} (Maps of lower-case name -> rating row; either may be null);
 * `replayUrl` links to the replay.
 */
export function renderSummary(push, history, { rematch = null, ratings = null, replayUrl }) {
  const view = push.view;
  const names = push.players;
  const you = push.you;
  const { title, how } = outcome(view, push.result, names, you);
  const seats = you === null ? [0, 1] : [you, 1 - you];
  const turns = history.turns();
  const first = history.moves.length ? history.moves[0].player : null;
  const rows = seats.map((seat) => {
    const won = flagsOf(view, seat);
    return h("tr", { dataset: { seat: String(seat) } },
      h("th", { scope: "row", text: seat === you ? `${names[seat]} (you)` : names[seat] }),
      h("td", { class: "num", dataset: { flagsWon: String(won.length) }, text: String(won.length) }),
      h("td", { text: won.length ? won.join(", ") : "none" }),
      h("td", { class: "num", dataset: { ratingAfter: ratingText(ratings, names[seat]) ? "1" : null }, text: ratingText(ratings, names[seat]) }),
      h("td", { text: first === null ? "" : first === seat ? "moved first" : "" }));
  });
  const who = (seat) => (seat === you ? "you" : names[seat]);
  const parts = [
    h("h3", { id: "summary-title", text: `${title}.` }),
    h("p", { class: "summary-how", text: how }),
    h("table", { class: "list summary-flags" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Player" }), h("th", { scope: "col", text: "Flags won" }), h("th", { scope: "col", text: "Which" }), h("th", { scope: "col", class: "num", text: "Rating" }), h("th", { scope: "col" }, h("span", { class: "sr-only", text: "First move" })))),
      h("tbody", {}, rows)),
    h("p", { text: `${plural(history.moves.length || push.ply, "move")} in ${plural(turns.length, "turn")}.` }),
    h("details", { class: "summary-moves" },
      h("summary", { text: "The moves, turn by turn" }),
      h("ol", {}, turns.map((t) => h("li", { attrs: { value: String(t.first) } }, describeTurn(t, who(t.player), view))))),
  ];
  const buttons = [h("a", { class: "button", href: replayUrl, dataset: { replayLink: push.game }, text: "Replay this game" })];
  if (rematch) {
    const opponent = names[1 - you];
    if (rematch.offer) {
      parts.push(h("p", { class: "rematch-offer", dataset: { rematchOffer: rematch.offer.iid } },
        `${opponent} offers a rematch. `,
        h("button", { type: "button", class: "primary", dataset: { action: "accept-rematch" }, text: "Accept", on: { click: () => rematch.onAccept(rematch.offer.iid) } }),
        " ",
        h("button", { type: "button", dataset: { action: "decline-rematch" }, text: "Decline", on: { click: () => rematch.onDecline(rematch.offer.iid) } })));
    } else {
      const next = first === null ? "colours swapped" : first === you ? `${opponent} moves first` : "you move first";
      buttons.unshift(h("button", {
        type: "button",
        class: "primary",
        dataset: { action: "rematch" },
        disabled: rematch.sent,
        text: rematch.sent ? `Rematch offered to ${opponent}…` : `Rematch (${next})`,
        on: { click: () => rematch.onRematch() },
      }));
    }
  }
  parts.push(h("div", { class: "buttons" }, buttons));
  return parts;
}

/** "1 move", "2 moves". @param {number} count @param {string} noun @returns {string} */
function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}
