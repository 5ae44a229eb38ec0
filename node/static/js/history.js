// The moves of a game from the deal as the game page knows them, and their grouping into turns
// (a turn: the claim, the card played and the draw of one player, plus a Scout's extra steps).
//
// Pushes carry only the latest move; when a push skips a ply (a reload, a reconnect, moves that
// arrived together) the page fetches the whole list (GET /api/moves/GID) and carries on.

import { listing, movePhrase } from "./cards.js";

export class MoveHistory {
  constructor() {
    this.moves = []; // moves[i] = {player, move}: the move of ply i + 1
  }

  /** Note the position at `ply` whose last move was `last` ({player, move} or null).
   *  Returns false when moves are missing: fetch the list and `replace` it. */
  note(ply, last) {
    if (ply < this.moves.length) this.moves.length = ply; // a rollback: the game went back
    if (ply === this.moves.length) return true;
    if (ply === this.moves.length + 1 && last) {
      this.moves.push(last);
      return true;
    }
    return false;
  }

  /** The full list from the server (public moves: a Scout's returns show their decks only);
   *  moves this page saw with more detail (its own Scout returns) keep it. */
  replace(moves) {
    this.moves = moves.map((m, i) => {
      const { player, ...move } = m;
      const known = this.moves[i];
      if (known && known.player === player && known.move.type === move.type) return known;
      return { player, move };
    });
  }

  /** Consecutive moves of one player: [{player, first (ply of its first move), moves: [{ply, move}]}];
   *  the turn of the game's latest claim has `hasLastClaim` (the view's `last_claim` is its). */
  turns() {
    const turns = [];
    let lastClaim = null;
    this.moves.forEach(({ player, move }, i) => {
      const last = turns[turns.length - 1];
      if (last && last.player === player) last.moves.push({ ply: i + 1, move });
      else turns.push({ player, first: i + 1, moves: [{ ply: i + 1, move }] });
      if (move.type === "claim") lastClaim = turns[turns.length - 1];
    });
    if (lastClaim) lastClaim.hasLastClaim = true;
    return turns;
  }

  /** The latest turn of `seat`, or null. */
  lastTurnOf(seat) {
    const turns = this.turns();
    for (let i = turns.length - 1; i >= 0; i -= 1) if (turns[i].player === seat) return turns[i];
    return null;
  }
}

/** A claim's outcome in words, from the view: the latest claim says which flags failed; an
 *  older one is judged by who holds the flag now. */
function claimPhrase(move, player, view, latestClaim) {
  const won = latestClaim ? latestClaim.won : move.flags.filter((f) => view.flags[f - 1]?.claimed_by === player);
  const lost = move.flags.filter((f) => !won.includes(f));
  const plural = (list) => (list.length > 1 ? "s" : "");
  if (!lost.length) return `claimed flag${plural(won)} ${listing(won.map(String))} and won ${won.length > 1 ? "them" : "it"}`;
  if (!won.length) return `claimed flag${plural(lost)} ${listing(lost.map(String))} but could not prove ${lost.length > 1 ? "them" : "it"}`;
  return `claimed flags ${listing(move.flags.map(String))}: won ${listing(won.map(String))}, could not prove ${listing(lost.map(String))}`;
}

/** A whole turn in one sentence, e.g. "bob claimed flag 3 and won it, played red 7 on flag 4
 *  and drew from the troop deck". An empty claim (going on without claiming) is left out. */
export function describeTurn(turn, who, view) {
  const latestClaimPly = turn.moves.filter((m) => m.move.type === "claim" && m.move.flags.length).map((m) => m.ply).pop();
  // The view's last_claim is the outcome of the game's latest claim only: an earlier claim of the
  // same player is judged by who holds its flags now.
  const claim = view.last_claim && turn.hasLastClaim ? view.last_claim : null;
  const parts = [];
  for (const { ply, move } of turn.moves) {
    if (move.type === "claim" && !move.flags.length) continue;
    if (move.type === "claim") parts.push(claimPhrase(move, turn.player, view, ply === latestClaimPly ? claim : null));
    else parts.push(movePhrase(move));
  }
  if (!parts.length) return `${who} went on without claiming`;
  return `${who} ${listing(parts)}`;
}

/** The cards a turn put on the table (or discarded) and the flags it claimed or played to. */
export function turnMarks(turn) {
  const cards = new Set();
  const flags = new Set();
  for (const { move } of turn?.moves || []) {
    if (move.type === "play") {
      cards.add(move.card);
      flags.add(move.flag);
    } else if ((move.type === "traitor" || move.type === "redeploy") && move.to_flag !== null && move.to_flag !== undefined) {
      cards.add(move.card);
      flags.add(move.to_flag);
    } else if (move.type === "deserter" || move.type === "redeploy") {
      cards.add(move.card);
    } else if (move.type === "claim") {
      for (const f of move.flags) flags.add(f);
    }
  }
  return { cards, flags, player: turn ? turn.player : null };
}
