// Prints how the page's move log describes each turn of a game in which alice's earlier claim
// won and her latest claim failed (tests/test_web_history.py reads the lines).
import { MoveHistory, describeTurn } from "../../node/static/js/history.js";

const moves = [
  { player: 0, move: { type: "claim", flags: [3] } },
  { player: 0, move: { type: "play", card: 7, flag: 1 } },
  { player: 0, move: { type: "draw", deck: "troop" } },
  { player: 1, move: { type: "claim", flags: [] } },
  { player: 1, move: { type: "play", card: 17, flag: 2 } },
  { player: 1, move: { type: "draw", deck: "troop" } },
  { player: 0, move: { type: "claim", flags: [5] } },
];
const history = new MoveHistory();
moves.forEach((move, i) => history.note(i + 1, move));
const view = {
  last_claim: { player: 0, flags: [5], won: [], failed: [{ flag: 5, counter_example: [] }] },
  flags: Array.from({ length: 9 }, (_, i) => ({ flag: i + 1, claimed_by: i + 1 === 3 ? 0 : null })),
};
for (const turn of history.turns()) console.log(describeTurn(turn, turn.player ? "bob" : "alice", view));
