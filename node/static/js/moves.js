// Turning clicks into moves. Every move the client sends is an element of the `legal` list of
// the latest `game` push: these functions only ever *select* from that list.

import { DESERTER, REDEPLOY, SCOUT, TRAITOR } from "./cards.js";

const GUILES = { traitor: TRAITOR, deserter: DESERTER, redeploy: REDEPLOY, scout: SCOUT };

export function emptySelection() {
  return { card: null, target: null, returning: [], claim: [] };
}

function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

export function sameMove(a, b) {
  return canonical(a) === canonical(b);
}

/** The hand cards that start some legal move (a troop, morale or environment card to play, or
 *  a guile), each with the kind of move it starts. */
export function handChoices(legal) {
  const choices = new Map();
  for (const move of legal) {
    if (move.type === "play") choices.set(move.card, "play");
    else if (GUILES[move.type]) choices.set(GUILES[move.type], move.type);
  }
  return choices;
}

/** Flags the selection can go to: [{flag, move}] (a complete move each). */
export function flagTargets(legal, sel) {
  if (sel.card === null) return [];
  if (sel.card === TRAITOR || sel.card === REDEPLOY) {
    if (sel.target === null) return [];
    const type = sel.card === TRAITOR ? "traitor" : "redeploy";
    return legal
      .filter((m) => m.type === type && m.card === sel.target && m.to_flag !== null)
      .map((m) => ({ flag: m.to_flag, move: m }));
  }
  return legal.filter((m) => m.type === "play" && m.card === sel.card).map((m) => ({ flag: m.flag, move: m }));
}

/** Cards on the table the selection can take: Map card -> complete move, or null when a flag
 *  must be chosen next (Traitor, Redeploy). */
export function tableTargets(legal, sel) {
  const targets = new Map();
  if (sel.card === DESERTER) {
    for (const m of legal) if (m.type === "deserter") targets.set(m.card, m);
  } else if ((sel.card === TRAITOR || sel.card === REDEPLOY) && sel.target === null) {
    const type = sel.card === TRAITOR ? "traitor" : "redeploy";
    for (const m of legal) if (m.type === type) targets.set(m.card, null);
  }
  return targets;
}

/** Redeploy's "to the discard pile" for the chosen card, if legal. */
export function discardTarget(legal, sel) {
  if (sel.card !== REDEPLOY || sel.target === null) return null;
  return legal.find((m) => m.type === "redeploy" && m.card === sel.target && m.to_flag === null) || null;
}

/** Deck buttons: Map deck -> move (a draw, or the Scout's first draw when the Scout is chosen). */
export function deckTargets(legal, sel) {
  const decks = new Map();
  for (const m of legal) {
    if (m.type === "draw") decks.set(m.deck, m);
    else if (m.type === "scout" && sel.card === SCOUT) decks.set(m.deck, m);
  }
  return decks;
}

export function passMove(legal) {
  return legal.find((m) => m.type === "pass") || null;
}

/** Flags that some legal claim includes. */
export function claimableFlags(legal) {
  const flags = new Set();
  for (const m of legal) if (m.type === "claim") for (const f of m.flags) flags.add(f);
  return [...flags].sort((a, b) => a - b);
}

/** The legal claim of exactly these flags (in any order), or null. */
export function claimMove(legal, flags) {
  const wanted = [...flags].sort((a, b) => a - b).join(",");
  return legal.find((m) => m.type === "claim" && [...m.flags].sort((a, b) => a - b).join(",") === wanted) || null;
}

/** How many cards a Scout return puts back (0 outside that phase). */
export function returnCount(legal) {
  const m = legal.find((x) => x.type === "scout_return");
  return m ? m.cards.length : 0;
}

/** Cards that may be put back with the Scout. */
export function returnable(legal) {
  const cards = new Set();
  for (const m of legal) if (m.type === "scout_return") for (const c of m.cards) cards.add(c);
  return cards;
}

/** The legal Scout return of these cards: the same order if listed, else the same set (cards
 *  going to different decks, where order does not matter). */
export function scoutReturnMove(legal, cards) {
  const returns = legal.filter((m) => m.type === "scout_return" && m.cards.length === cards.length);
  const exact = returns.find((m) => m.cards.every((c, i) => c === cards[i]));
  if (exact) return exact;
  const set = [...cards].sort((a, b) => a - b).join(",");
  return returns.find((m) => [...m.cards].sort((a, b) => a - b).join(",") === set) || null;
}
