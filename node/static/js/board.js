// Drawing a Battleline table from a view (player, spectator or replay): the nine flags with both
// sides, Mud and Fog, claimed flags, the last move, and (on your turn) the places you can click.

import { h } from "./dom.js";
import { cardBack, cardName, cardTile } from "./cards.js";
import { flagTargets, tableTargets } from "./moves.js";

/** Cards the last move put somewhere on the table: Map card -> true, and the flags it touched. */
export function lastMoveMarks(view) {
  const cards = new Set();
  const flags = new Set();
  const last = view.last_move;
  if (!last) return { cards, flags, player: null };
  const m = last.move;
  if (m.type === "play") {
    cards.add(m.card);
    flags.add(m.flag);
  } else if ((m.type === "traitor" || m.type === "redeploy") && m.to_flag !== null && m.to_flag !== undefined) {
    cards.add(m.card);
    flags.add(m.to_flag);
  } else if (m.type === "deserter" || m.type === "redeploy") {
    cards.add(m.card); // now on a discard pile
  } else if (m.type === "claim") {
    for (const f of m.flags) flags.add(f);
  }
  return { cards, flags, player: last.player };
}

function sideLabel(names, seat, you) {
  if (you === seat) return "your";
  return `${names[seat]}'s`;
}

/**
 * The table. Options:
 *  bottom: the seat drawn at the bottom; names: [name0, name1]; you: your seat or null;
 *  play: null, or {legal, sel, onTable(card, move), onFlag(flag, move), onClaim(flag),
 *        onDiscard(move)} when it is your move;
 *  marks: the cards and flags to outline as the latest news (default: the view's last move).
 */
export function renderTable(view, { bottom, names, you, play = null, marks = null }) {
  const top = 1 - bottom;
  marks = marks || lastMoveMarks(view);
  const claimSel = new Set(play?.sel.claim ?? []);
  const claimable = new Set(play?.claimable ?? []);
  const targetsByFlag = new Map((play ? flagTargets(play.legal, play.sel) : []).map((t) => [t.flag, t.move]));
  const tableChoice = play ? tableTargets(play.legal, play.sel) : new Map();
  const failed = new Map((view.last_claim?.failed ?? []).map((f) => [f.flag, f]));
  const columns = view.flags.map((flag) => {
    const owner = flag.claimed_by;
    const size = flag.mud ? 4 : 3;
    const side = (seat) => {
      const cards = flag.sides[seat].map((card) => {
        const classes = [marks.cards.has(card) && marks.flags.has(flag.flag) ? "last" : ""];
        if (tableChoice.has(card)) {
          classes.push("choice");
          return cardTile(card, {
            classes,
            label: `${cardName(card)} on flag ${flag.flag} (${sideLabel(names, seat, you)} side): choose`,
            onClick: () => play.onTable(card, tableChoice.get(card)),
          });
        }
        if (play?.sel.target === card) classes.push("chosen");
        return cardTile(card, { classes, label: `${cardName(card)}, ${sideLabel(names, seat, you)} side of flag ${flag.flag}` });
      });
      const slots = Math.max(0, size - cards.length);
      const empty = Array.from({ length: slots }, () => h("span", { class: "slot", attrs: { "aria-hidden": "true" } }));
      const target = seat === bottom && targetsByFlag.has(flag.flag)
        ? h("button", {
            type: "button",
            class: "target",
            dataset: { targetFlag: String(flag.flag) },
            text: `Here (flag ${flag.flag})`,
            on: { click: () => play.onFlag(flag.flag, targetsByFlag.get(flag.flag)) },
          })
        : null;
      return h(
        "div",
        { class: ["side", seat === top ? "top" : "bottom"], attrs: { "aria-label": `${sideLabel(names, seat, you)} side of flag ${flag.flag}` } },
        cards,
        target,
        empty,
      );
    };
    const badges = [
      flag.mud ? h("span", { class: "badge mud", text: "Mud", title: "Mud: formations here need four cards" }) : null,
      flag.fog ? h("span", { class: "badge fog", text: "Fog", title: "Fog: every formation here counts as a host" }) : null,
    ];
    const claimedText = owner === null ? "" : owner === you ? "won by you" : `won by ${names[owner]}`;
    const failedHere = failed.has(flag.flag) && view.last_claim?.player !== undefined;
    const markerBody = [
      h("span", { class: "flag-number", text: `⚑ ${flag.flag}` }),
      badges,
      claimedText ? h("span", { class: "claimed-text", text: claimedText }) : null,
      failedHere ? h("span", { class: "badge failed", text: "claim failed", title: "the last claim of this flag failed: see Latest claim" }) : null,
    ];
    let marker;
    if (claimable.has(flag.flag)) {
      const on = claimSel.has(flag.flag);
      marker = h(
        "button",
        {
          type: "button",
          class: ["flag-marker", "claimable", on ? "selected" : ""],
          dataset: { claimFlag: String(flag.flag) },
          attrs: { "aria-pressed": String(on), "aria-label": `Claim flag ${flag.flag}` },
          on: { click: () => play.onClaim(flag.flag) },
        },
        markerBody,
      );
    } else {
      marker = h("div", { class: "flag-marker" }, markerBody);
    }
    return h(
      "div",
      {
        class: [
          "flag-col",
          owner === null ? "" : owner === bottom ? "won-bottom" : "won-top",
          marks.flags.has(flag.flag) ? "last-flag" : "",
          targetsByFlag.has(flag.flag) ? "target-flag" : "",
          flag.mud ? "mud" : "",
          flag.fog ? "fog" : "",
        ],
        dataset: { flag: String(flag.flag), claimedBy: owner === null ? "" : String(owner), target: targetsByFlag.has(flag.flag) ? "1" : null },
      },
      side(top),
      marker,
      side(bottom),
    );
  });
  return h("div", { class: "flags", attrs: { role: "group", "aria-label": "The nine flags" } }, columns);
}

/** One player's line: hand (counts or cards), tactics played, leader, discard pile. */
export function renderSeatInfo(view, seat, { names, you, hand = null }) {
  const isYou = seat === you;
  const counts = view.view === "player" ? (isYou ? null : view.opponent_hand) : Array.isArray(view.hands?.[seat]) ? null : view.hands?.[seat];
  const shown = hand ?? (Array.isArray(view.hands?.[seat]) ? view.hands[seat] : null);
  let handPart = null;
  if (shown && !isYou) {
    handPart = h("span", { class: "mini-hand" }, shown.map((c) => cardTile(c, { classes: ["small"] })));
  } else if (counts) {
    const backs = [
      ...Array.from({ length: counts.troops }, () => cardBack("troop")),
      ...Array.from({ length: counts.tactics }, () => cardBack("tactic")),
    ];
    handPart = h("span", { class: "mini-hand", title: `${counts.troops} troops, ${counts.tactics} tactics` }, backs,
      h("span", { class: "muted", text: ` ${counts.troops} troop${counts.troops === 1 ? "" : "s"}, ${counts.tactics} tactic${counts.tactics === 1 ? "" : "s"}` }));
  }
  const discards = view.discards[seat];
  return h(
    "div",
    { class: ["seat-info", seat === view.to_move ? "to-move" : ""], dataset: { seat: String(seat) } },
    h("strong", { text: isYou ? `${names[seat]} (you)` : names[seat] }),
    seat === view.to_move && view.result === null ? h("span", { class: "badge turn", text: "to move" }) : null,
    handPart,
    h("span", { class: "muted", text: `tactics played ${view.tactics_played[seat]}${view.leader_played[seat] ? " (leader used)" : ""}` }),
    discards.length
      ? h("span", { class: "discards", attrs: { "aria-label": `discarded by ${names[seat]}` } }, h("span", { class: "muted", text: "discarded:" }), discards.map((c) => cardTile(c, { classes: ["small"] })))
      : null,
  );
}

/** The latest claim, with the counter-example of every flag that could not be proved. */
export function renderLastClaim(view, { names, you }) {
  const claim = view.last_claim;
  if (!claim || !claim.flags.length) return null;
  const who = claim.player === you ? "You" : names[claim.player];
  const other = claim.player === you ? (you === null ? names[1 - claim.player] : "your opponent") : you === null ? names[1 - claim.player] : "you";
  return h(
    "div",
    { class: "last-claim", attrs: { "aria-label": "Latest claim" } },
    h("h3", { text: "Latest claim" }),
    h("p", {
      text: `${who} claimed flag${claim.flags.length > 1 ? "s" : ""} ${claim.flags.join(", ")}` +
        (claim.won.length ? `; won ${claim.won.join(", ")}.` : "; won none."),
    }),
    claim.failed.map((f) => {
      const onTable = new Set(view.flags[f.flag - 1].sides[1 - claim.player]);
      const unplayed = f.counter_example.filter((c) => !onTable.has(c)).length;
      return h(
        "div",
        { class: "counter-example", dataset: { failedFlag: String(f.flag) } },
        h("p", {
          text: `Flag ${f.flag} could not be proved: ${other === "you" ? "your" : `${other}'s`} side there ` +
            (unplayed
              ? `can still become this, which beats it (dashed: ${unplayed === 1 ? "a card" : "cards"} not played yet):`
              : "already beats it:"),
        }),
        h("div", { class: "card-row" }, f.counter_example.map((c) => cardTile(c, {
          classes: ["small", onTable.has(c) ? "" : "unplayed"],
          label: `${cardName(c)}${onTable.has(c) ? " (on the table)" : " (not played yet)"}`,
        }))),
      );
    }),
  );
}

/** Deck counts, with draw buttons when `decks` (Map deck -> move) offers them. */
export function renderDecks(view, { decks = new Map(), onDeck = null } = {}) {
  const deck = (name, label) => {
    const count = view.decks[name];
    const move = decks.get(name);
    return h(
      "div",
      { class: ["deck", name] },
      h("span", { class: ["card", "back", name], attrs: { "aria-hidden": "true" } }),
      h("span", { text: `${label}: ${count}` }),
      move && onDeck
        ? h("button", { type: "button", class: "primary deck-target", dataset: { deck: name }, text: move.type === "scout" ? `Scout from ${label.toLowerCase()}` : `Draw ${name}`, on: { click: () => onDeck(move) } })
        : null,
    );
  };
  return h("div", { class: "decks" }, deck("troop", "Troop deck"), deck("tactic", "Tactic deck"));
}

