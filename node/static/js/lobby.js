// The lobby's lists: players online (with their region), invitations in and out, games in
// play to watch, your saved games to resume, your finished games to replay.

import { fill, h } from "./dom.js";
import { REASONS } from "./cards.js";
import { clockLabel } from "./clock.js";

/** " (10+5)" after an invitation with a time control. */
function timed(invite) {
  return invite.clock ? ` (${clockLabel(invite.clock)})` : "";
}

const STATUS = { idle: "available", playing: "playing", watching: "watching" };

export function renderPlayers(tbody, lobby, me, invites, actions, ratings = new Map()) {
  const invited = new Set(invites.outgoing.map((i) => i.to.toLowerCase()));
  const rows = [...lobby.values()]
    .sort((a, b) => (a.name.toLowerCase() === me ? -1 : b.name.toLowerCase() === me ? 1 : a.name.localeCompare(b.name)))
    .map((p) => {
      const self = p.name.toLowerCase() === me;
      const status = p.status === "playing" && p.opponent ? `playing ${p.opponent}` : STATUS[p.status] || p.status;
      const buttons = [];
      if (!self && p.status !== "playing") {
        buttons.push(h("button", {
          type: "button",
          dataset: { invite: p.name },
          disabled: invited.has(p.name.toLowerCase()),
          text: invited.has(p.name.toLowerCase()) ? "Invited" : "Invite",
          attrs: { "aria-label": `Invite ${p.name} to a game` },
          on: { click: () => actions.invite(p.name) },
        }));
      }
      if (p.status === "playing") {
        buttons.push(h("button", { type: "button", dataset: { watchPlayer: p.name }, text: "Watch", attrs: { "aria-label": `Watch ${p.name}'s game` }, on: { click: () => actions.watchPlayer(p.name) } }));
      }
      if (!self) {
        buttons.push(h("button", { type: "button", class: "link", text: "Message", attrs: { "aria-label": `Send ${p.name} a message` }, on: { click: () => actions.message(p.name) } }));
      }
      return h(
        "tr",
        { dataset: { player: p.name, region: p.region, status: p.status } },
        h("td", {}, h("strong", { text: p.name }), self ? h("span", { class: "muted", text: " (you)" }) : null),
        h("td", {}, h("span", { class: "region-tag", text: p.region })),
        h("td", { class: "num rating", text: ratings.has(p.name.toLowerCase()) ? String(ratings.get(p.name.toLowerCase()).rating) : "1500", title: ratings.has(p.name.toLowerCase()) ? `${ratings.get(p.name.toLowerCase()).games} rated games` : "no rated game yet" }),
        h("td", { class: `status ${p.status}`, text: status }),
        h("td", { class: "actions" }, buttons),
      );
    });
  fill(tbody, rows.length ? rows : h("tr", {}, h("td", { attrs: { colspan: "5" }, class: "muted", text: "Nobody is online." })));
}

export function renderInvites(el, invites, actions) {
  const incoming = invites.incoming.map((i) =>
    h("li", { dataset: { incoming: i.from, iid: i.iid } },
      h("span", { text: i.resume ? `${i.from} invites you to resume your saved game${timed(i)}` : `${i.from} invites you to a game${timed(i)}` }),
      h("span", { class: "buttons" },
        h("button", { type: "button", class: "primary", dataset: { accept: i.iid }, text: "Accept", on: { click: () => actions.accept(i.iid) } }),
        h("button", { type: "button", dataset: { decline: i.iid }, text: "Decline", on: { click: () => actions.decline(i.iid) } }),
      ),
    ),
  );
  const outgoing = invites.outgoing.map((i) =>
    h("li", { dataset: { outgoing: i.to, iid: i.iid } },
      h("span", { text: `${i.resume ? `You invited ${i.to} to resume a saved game` : `You invited ${i.to}`}${timed(i)}: waiting for an answer…` }),
      h("span", { class: "buttons" },
        h("button", { type: "button", dataset: { retract: i.iid }, text: "Withdraw", on: { click: () => actions.retract(i.iid) } }),
      ),
    ),
  );
  fill(
    el,
    incoming.length || outgoing.length ? null : h("p", { class: "muted", text: "No invitations. Invite a player from the list." }),
    incoming.length ? h("ul", { class: "items", attrs: { "aria-label": "Invitations to you" } }, incoming) : null,
    outgoing.length ? h("ul", { class: "items", attrs: { "aria-label": "Invitations you sent" } }, outgoing) : null,
  );
}

export function renderLiveGames(el, games, me, actions) {
  const items = games.map((g) =>
    h("li", { dataset: { liveGame: g.gid } },
      h("span", { text: `${g.names[0]} vs ${g.names[1]}, move ${g.ply}` }),
      g.names.some((n) => n.toLowerCase() === me)
        ? h("button", { type: "button", text: "Open", on: { click: () => actions.open(g.gid) } })
        : h("button", { type: "button", dataset: { watch: g.gid }, text: "Watch", attrs: { "aria-label": `Watch ${g.names[0]} vs ${g.names[1]}` }, on: { click: () => actions.watch(g.gid) } }),
    ),
  );
  fill(el, items.length ? h("ul", { class: "items" }, items) : h("p", { class: "muted", text: "No game is being played." }));
}

export function renderSaved(el, saved, me, online, actions) {
  const items = saved.map((g) => {
    const other = g.players.find((n) => n.toLowerCase() !== me) || g.players[1];
    const here = online.has(other.toLowerCase());
    return h("li", { dataset: { saved: g.gid } },
      h("span", { text: `${g.players[0]} vs ${g.players[1]}, ${g.moves} moves` }),
      h("button", {
        type: "button",
        dataset: { resume: g.gid },
        disabled: !here,
        title: here ? `Invite ${other} to go on with this game` : `${other} is not online`,
        text: here ? `Resume with ${other}` : `${other} is offline`,
        on: { click: () => actions.resume(g.gid, other) },
      }),
    );
  });
  fill(el, items.length ? h("ul", { class: "items" }, items) : h("p", { class: "muted", text: "None." }));
}

export function renderFinished(el, games, me, actions) {
  const items = games.slice(0, 20).map((g) => {
    const seat = g.names.findIndex((n) => n.toLowerCase() === me);
    const r = g.result || {};
    const how = REASONS[r.reason] || r.reason || "?";
    let outcome = `a draw (${how})`;
    if (r.winner !== null && r.winner !== undefined) outcome = `${r.winner === seat ? "you" : g.names[r.winner]} won by ${how}`;
    return h("li", { dataset: { finished: g.gid } },
      h("span", { text: `${g.names[0]} vs ${g.names[1]}: ${outcome}; ${g.moves} moves` }),
      h("button", { type: "button", dataset: { replay: g.gid }, text: "Replay", on: { click: () => actions.replay(g.gid) } }),
    );
  });
  fill(el, items.length ? h("ul", { class: "items" }, items) : h("p", { class: "muted", text: "None yet." }));
}

/** The leaderboard rows (GET /api/ratings), your own row marked. */
export function renderLeaderboard(tbody, rows, me) {
  const body = rows.map((r) => h("tr", { class: r.name.toLowerCase() === me ? "me" : "", dataset: { rated: r.name } },
    h("td", { class: "num", text: String(r.rank) }),
    h("th", { scope: "row", text: r.name.toLowerCase() === me ? `${r.name} (you)` : r.name }),
    h("td", { class: "num rating", text: String(r.rating) }),
    h("td", { class: "num", text: String(r.games) }),
    h("td", { class: "num", text: String(r.won) }),
    h("td", { class: "num", text: String(r.lost) }),
    h("td", { class: "num", text: String(r.drawn) }),
  ));
  fill(tbody, body.length ? body : h("tr", {}, h("td", { attrs: { colspan: "7" }, class: "muted", text: "No finished game yet." })));
}
