// Battleline cards (go-battleline numbering, docs/battleline.md) and how moves read in words.

import { h } from "./dom.js";

export const COLOURS = ["green", "red", "purple", "yellow", "blue", "orange"];

export const TACTICS = {
  61: { name: "Traitor", short: "Trt", group: "guile", help: "take an opponent's troop to a flag on your side" },
  62: { name: "Deserter", short: "Des", group: "guile", help: "discard any opponent card from an open flag" },
  63: { name: "Redeploy", short: "Red", group: "guile", help: "move one of your cards to another flag or discard it" },
  64: { name: "Scout", short: "Sct", group: "guile", help: "draw three cards, then put two back" },
  65: { name: "Mud", short: "Mud", group: "environment", help: "formations at this flag need four cards" },
  66: { name: "Fog", short: "Fog", group: "environment", help: "every formation at this flag counts as a host" },
  67: { name: "123", short: "123", group: "morale", help: "any colour, strength 1, 2 or 3" },
  68: { name: "8", short: "8", group: "morale", help: "any colour, strength 8" },
  69: { name: "Darius", short: "Dar", group: "leader", help: "leader: any colour, any strength" },
  70: { name: "Alexander", short: "Alx", group: "leader", help: "leader: any colour, any strength" },
};

export const TRAITOR = 61;
export const DESERTER = 62;
export const REDEPLOY = 63;
export const SCOUT = 64;

export function isTactic(card) {
  return card > 60;
}

export function colourOf(card) {
  return COLOURS[Math.floor((card - 1) / 10)];
}

export function strengthOf(card) {
  return card % 10 === 0 ? 10 : card % 10;
}

export function cardName(card) {
  if (isTactic(card)) return TACTICS[card]?.name ?? `tactic ${card}`;
  return `${colourOf(card)} ${strengthOf(card)}`;
}

/**
 * A card as a visual tile (a <span>, or a <button> with `onClick`).
 * @param {any} card
 * @param {{onClick?: () => void, classes?: string[], label?: string, disabled?: boolean,
 *          pressed?: boolean}} [options]
 */
export function cardTile(card, { onClick, classes = [], label, disabled = false, pressed } = {}) {
  const tactic = isTactic(card);
  const face = tactic
    ? [h("span", { class: "face", text: TACTICS[card]?.short ?? "?" })]
    : [h("span", { class: "face", text: String(strengthOf(card)) }), h("span", { class: "suit", text: colourOf(card)[0].toUpperCase() })];
  const props = {
    class: ["card", tactic ? `tactic ${TACTICS[card]?.group}` : `troop ${colourOf(card)}`, ...classes],
    dataset: { card: String(card) },
    title: tactic ? `${cardName(card)}: ${TACTICS[card]?.help}` : cardName(card),
    attrs: { "aria-label": label || cardName(card) },
  };
  if (onClick) {
    return h("button", { ...props, type: "button", disabled, on: { click: onClick }, attrs: { ...props.attrs, "aria-pressed": pressed === undefined ? null : String(pressed) } }, face);
  }
  return h("span", { ...props, attrs: { ...props.attrs, role: "img" } }, face);
}

/** A face-down card: deck or the opponent's hand. */
export function cardBack(kind) {
  return h("span", { class: ["card", "back", kind], attrs: { "aria-hidden": "true" } });
}

function cards(list) {
  return list.map(cardName).join(", ");
}

/** What a move did, without its subject ("played red 7 on flag 4"). */
export function movePhrase(move) {
  switch (move.type) {
    case "claim":
      return move.flags.length ? `claimed flag${move.flags.length > 1 ? "s" : ""} ${move.flags.join(", ")}` : "went on without claiming";
    case "play":
      return `played ${cardName(move.card)} on flag ${move.flag}`;
    case "pass":
      return "passed";
    case "traitor":
      return `played the Traitor: took ${cardName(move.card)} to flag ${move.to_flag}`;
    case "deserter":
      return `played the Deserter: discarded ${cardName(move.card)}`;
    case "redeploy":
      return move.to_flag === null
        ? `played Redeploy: discarded own ${cardName(move.card)}`
        : `played Redeploy: moved ${cardName(move.card)} to flag ${move.to_flag}`;
    case "scout":
      return `played the Scout and drew from the ${move.deck} deck`;
    case "draw":
      return `drew from the ${move.deck} deck`;
    case "scout_return":
      return move.cards ? `put back ${cards(move.cards)}` : `put back ${move.decks.length} cards (${move.decks.join(" and ")} deck)`;
    case "give_up":
      return "gave up";
    case "timeout":
      return "ran out of time";
    case "pause":
      return "paused the game";
    case "resume":
      return "resumed the game";
    default:
      return move.type;
  }
}

/** One move in words. `who` is the mover's name ("you" for yourself). */
export function describeMove(move, who) {
  return `${who} ${movePhrase(move)}`;
}

/** "a, b and c" */
export function listing(parts) {
  if (parts.length <= 1) return parts.join("");
  return `${parts.slice(0, -1).join(", ")} and ${parts[parts.length - 1]}`;
}

/** Short label for a move in the list of legal moves (the mover is you). */
export function moveLabel(move) {
  switch (move.type) {
    case "claim":
      return move.flags.length ? `Claim flag${move.flags.length > 1 ? "s" : ""} ${move.flags.join(", ")}` : "Claim nothing";
    case "play":
      return `Play ${cardName(move.card)} on flag ${move.flag}`;
    case "pass":
      return "Pass";
    case "traitor":
      return `Traitor: take ${cardName(move.card)} to flag ${move.to_flag}`;
    case "deserter":
      return `Deserter: discard ${cardName(move.card)}`;
    case "redeploy":
      return move.to_flag === null ? `Redeploy: discard ${cardName(move.card)}` : `Redeploy: ${cardName(move.card)} to flag ${move.to_flag}`;
    case "scout":
      return `Scout: draw from the ${move.deck} deck`;
    case "draw":
      return `Draw from the ${move.deck} deck`;
    case "scout_return":
      return `Put back ${cards(move.cards)} (${cardName(move.cards[move.cards.length - 1])} on top)`;
    default:
      return move.type;
  }
}

export const REASONS = {
  flags: "five flags",
  breakthrough: "a breakthrough (three adjacent flags)",
  give_up: "the other player giving up",
  time: "the other player's time running out",
  stalemate: "stalemate",
};
