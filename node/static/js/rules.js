// "How to play": the rules of Battleline as this server plays them (docs/battleline.md), with
// examples drawn with the same card tiles as the table.

import { h } from "./dom.js";
import { cardTile, TACTICS } from "./cards.js";

// Card numbers (cards.js): colour (c-1)//10 in green, red, purple, yellow, blue, orange; strength c%10.
const FORMATIONS = [
  {
    name: "Wedge",
    rule: "three cards of one colour with consecutive strengths",
    cards: [18, 19, 20],
    example: "red 8, 9, 10",
  },
  {
    name: "Phalanx",
    rule: "three cards of the same strength",
    cards: [7, 47, 37],
    example: "three 7s",
  },
  {
    name: "Battalion",
    rule: "three cards of one colour",
    cards: [22, 25, 29],
    example: "purple 2, 5, 9",
  },
  {
    name: "Skirmish line",
    rule: "three consecutive strengths in any colours",
    cards: [54, 35, 6],
    example: "4, 5, 6",
  },
  {
    name: "Host",
    rule: "anything else: only the sum counts",
    cards: [50, 13, 6],
    example: "blue 10, red 3, green 6",
  },
];

const TACTIC_TEXT = {
  69: "Leader (Darius): a joker of any colour and any strength. Each player may play only one leader per game.",
  70: "Leader (Alexander): the same as Darius; one leader per player per game.",
  68: "Companion cavalry (8): any colour, strength 8.",
  67: "Shield bearers (123): any colour, strength 1, 2 or 3.",
  66: "Fog, on any open flag: no formations there; every side counts as a host (the sum decides).",
  65: "Mud, on any open flag: formations there need four cards, on both sides.",
  64: "Scout: draw three cards (from either deck, in any mix), then put cards back on top of their decks until you hold 7 again (usually two).",
  63: "Redeploy: move one of your own cards from an open flag to another open flag, or discard it.",
  62: "Deserter: discard any one of your opponent's cards from an open flag.",
  61: "Traitor: take one of your opponent's troops (not a tactic) from an open flag to your side of an open flag.",
};
const TACTIC_ORDER = [69, 70, 68, 67, 66, 65, 64, 63, 62, 61];

function row(cards, label) {
  return h("span", { class: "card-row example", attrs: { role: "img", "aria-label": label } },
    cards.map((c) => cardTile(c, { classes: ["small"] })));
}

function section(id, title, ...body) {
  return h("section", { class: "rules-section", dataset: { rules: id }, attrs: { "aria-labelledby": `rules-${id}` } },
    h("h3", { id: `rules-${id}`, text: title }), body);
}

/** The whole "How to play" text, as elements. */
export function rulesContent() {
  return [
    section("goal", "The goal",
      h("p", { text: "Nine flags lie between you and your opponent. Win five of them, or three flags next to each other (a breakthrough), and you win the game." }),
      h("p", { text: "There are 60 troop cards, in six colours with strengths 1 to 10, and 10 tactic cards. Each player holds 7 cards; the troop deck and the tactic deck lie face down." })),
    section("turn", "Your turn",
      h("ol", {},
        h("li", {}, h("strong", { text: "Claim" }), " (only offered when you can): claim any flags you can prove are yours (see below), or go on without claiming."),
        h("li", {}, h("strong", { text: "Play one card" }), ": a troop on your side of an open flag (at most 3 cards per side, 4 under Mud), or a tactic. You may pass only when you have no troop you can play."),
        h("li", {}, h("strong", { text: "Draw one card" }), " from the troop deck or the tactic deck, back up to 7 cards.")),
      h("p", { text: "Then it is your opponent's turn. The page says whose move it is and which step, and lists every legal move." })),
    section("formations", "Formations, strongest first",
      h("p", { text: "When both sides of a flag have three cards, the stronger formation wins the flag. A stronger kind always beats a weaker one; between two of the same kind, the higher sum of strengths wins." }),
      h("ol", { class: "formations" }, FORMATIONS.map((f) => h("li", { dataset: { formation: f.name.toLowerCase() } },
        h("strong", { text: f.name }), `: ${f.rule}, e.g. ${f.example}. `,
        row(f.cards, `${f.name}: ${f.example}`)))),
      h("p", { text: "Wedge 8-9-10 beats phalanx 10-10-10: the kind comes before the sum." })),
    section("claims", "Claiming a flag, with proof",
      h("p", { text: "At the start of your turn you may claim a flag where your side is complete and no way of finishing your opponent's side can beat it." }),
      h("p", { text: "The proof looks at every troop not yet on the table (the deck and both hands); tactics not yet played do not count. If your side would win or tie (a tie goes to the claimer), the flag is yours at once, even before your opponent's side is full." }),
      h("p", { text: "If the proof fails, the flag stays open and the page shows the counter-example: the cards your opponent's side could still become, dashed when not played yet." }),
      h("p", { text: "Once claimed, a flag is settled: no card may be played to it, moved from it or taken from it." })),
    section("tactics", "Tactic cards",
      h("p", { text: "You may play a tactic only while you have not played more tactics than your opponent. Morale tactics (leaders, 8, 123) are jokers: they take the colour and strength that suit your formation best." }),
      h("ul", { class: "tactics" }, TACTIC_ORDER.map((card) => h("li", { dataset: { tactic: String(card) } },
        cardTile(card, { classes: ["small"], label: TACTICS[card].name }), " ", TACTIC_TEXT[card])))),
    section("page", "Playing on this page",
      h("ul", {},
        h("li", { text: "Click (or Tab to and press Enter on) a card in your hand: the flags it may go to light up with a \"Here\" button; choose one." }),
        h("li", { text: "Claimable flags show a dashed ⚑ button: toggle the ones to claim, then \"Claim\"." }),
        h("li", { text: "Draw with the deck buttons. Escape cancels a half-made move. The list \"All legal moves\" plays any move with one click." }),
        h("li", { text: "\"Last turn\" shows everything your opponent did in their turn: the claims, the card played and the draw." }))),
  ];
}

/** Fill the rules dialog once and wire its open buttons (any element with data-open-rules). */
export function setUpRules(dialog) {
  dialog.querySelector(".rules-body").append(...rulesContent());
  for (const button of document.querySelectorAll("[data-open-rules]")) {
    button.addEventListener("click", () => {
      if (!dialog.open) dialog.showModal();
      dialog.querySelector("h2").focus();
    });
  }
  dialog.querySelector("[data-close-rules]").addEventListener("click", () => dialog.close());
}
