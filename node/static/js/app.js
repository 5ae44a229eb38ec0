// The player client: log in through the nearest region, the lobby, games, watching, chat,
// saved and finished games, and keeping the session alive across regions (docs/web.md).

import { $, fill, h, show } from "./dom.js";
import { ApiError, api, failoverOrder, fetchRegions, formatRtt, measureRegions, pickProcess, preferredRegion, regionsOf, sortByRtt } from "./net.js";
import { Connection, FINAL_CLOSES } from "./connection.js";
import { GameScreen } from "./game.js";
import { ReplayScreen } from "./replay.js";
import { renderFinished, renderInvites, renderLeaderboard, renderLiveGames, renderPlayers, renderSaved } from "./lobby.js";
import { setUpRules } from "./rules.js";
import { PRESETS, clockField, clockLabel } from "./clock.js";

const STORE_KEY = "meridian.session";
const GRACE_MS = 60000; // a dropped session can be resumed this long (docs/protocol.md)
const LIVE_POLL_MS = 3000;
const BANNER_MS = 12000;
const REMEASURE_MS = 5000;
const LEADERBOARD_ROWS = 100;
const MAX_RATED_NAMES = 200; // the lobby asks for the ratings of at most this many players
// While the leaderboard is open and the regions' tables differ (a finished game still on its way,
// a region slow to answer), every region is asked again this often until they agree.
const AGREEMENT_RECHECK_MS = 3000;
const DECLINE_WAIT_MS = 2500; // an invitation that left the list without a game this long was declined
const MAX_SEEN_GAMES = 16; // hello's `seen` holds at most this many games (docs/protocol.md)
const MAX_LOST_LINES = 4; // and at most this many lines told only a bound, per game

const S = {
  regions: [], // node processes, several per region where a region runs several: [{region, node, url, opened, rtt, players}] fastest first
  chosen: null, // region name picked by the user; null: automatic (preferredRegion)
  token: "",
  resume: "",
  you: null, // {uid, name, region, home, must_rename}
  conn: null,
  reconnecting: false,
  following: null, // the promise of a drain's move under way (requests wait for it)
  lobby: new Map(),
  invites: { incoming: [], outgoing: [] },
  sent: new Map(), // lower-case name -> {name, iid}: invitations sent from this page, unanswered
  withdrawn: new Set(), // iids this page withdrew (their disappearance is no refusal)
  games: new Map(), // gid -> latest game push
  lost: new Map(), // gid -> [{ply, head, told}]: lines told only with a bound (hello's seen.lost)
  current: null, // gid of the game on screen
  watching: null, // gid watched
  saved: [],
  finished: [],
  live: [],
  ratings: new Map(), // lower-case name -> {rating, games, ...} of players in the lobby
  screen: "login",
};

const game = new GameScreen({
  move: (gid, move) => request("move", { game: gid, move }),
  fetchMoves: async (gid) => (await api(`${S.conn?.region.url || ""}/api/moves/${encodeURIComponent(gid)}`, { timeout: 5000 })).moves,
  request: (type, fields) => request(type, fields),
  toLobby: () => leaveGame(),
  stopWatching: () => stopWatching(),
  replay: (gid) => openReplay(gid),
  replayUrl: (gid) => `${location.origin}/?replay=${encodeURIComponent(gid)}`,
  rematch: (name) => invite(name, sameClock(S.games.get(S.current))),
  rematchOffer: (name) => S.invites.incoming.find((i) => i.from.toLowerCase() === name.toLowerCase() && !i.resume) || null,
  rematchSent: (name) => S.sent.has(name.toLowerCase()),
  accept: (iid) => accept(iid),
  decline: (iid) => decline(iid),
  ratingsOf: async (names) => {
    const reply = await api(`${S.conn?.region.url || ""}/api/ratings?names=${encodeURIComponent(names.join(","))}`, { timeout: 5000 });
    return new Map(reply.ratings.map((r) => [r.name.toLowerCase(), r]));
  },
});
const replay = new ReplayScreen({
  onClose: () => {
    if (location.search) history.replaceState(null, "", location.pathname); // leave the replay link
    showScreen(S.you ? "lobby" : "login");
  },
});

// --- small helpers -----------------------------------------------------------------------

function me() {
  return (S.you?.name || "").toLowerCase();
}

/** Send a request on the session's connection. During a drain's move it waits for the new node:
 *  what the old node would still do (start a game) may not be there yet when the page moves. */
async function request(type, fields = {}) {
  if (S.following) await S.following.catch(() => {});
  if (!S.conn || !S.conn.isOpen) throw new ApiError("disconnected", "not connected; reconnecting");
  return S.conn.request(type, fields);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A message at the top of the page. kind: info | ok | warn | error. */
function banner(text, kind = "info", { sticky = false, actions = [], id = null } = {}) {
  if (id) document.getElementById(id)?.remove();
  const el = h(
    "div",
    { class: ["banner", kind], id, attrs: { role: kind === "error" || kind === "warn" ? "alert" : "status" } },
    h("span", { class: "banner-text", text }),
    actions.map(([label, fn]) => h("button", { type: "button", text: label, on: { click: () => { el.remove(); fn(); } } })),
    h("button", { type: "button", class: "close", text: "×", attrs: { "aria-label": "Dismiss" }, on: { click: () => el.remove() } }),
  );
  $("#banners").append(el);
  if (!sticky) setTimeout(() => el.remove(), BANNER_MS);
  return el;
}

function showScreen(name) {
  S.screen = name;
  for (const screen of ["login", "lobby", "game", "replay", "leaderboard"]) show($(`#screen-${screen}`), screen === name);
  document.body.dataset.screen = name;
}

function store() {
  if (!S.token) {
    sessionStorage.removeItem(STORE_KEY);
    return;
  }
  sessionStorage.setItem(STORE_KEY, JSON.stringify({
    token: S.token,
    resume: S.resume,
    name: S.you?.name || "",
    region: S.conn?.region.region || "",
    node: S.conn?.region.node || "",
    chosen: S.chosen,
    watching: S.watching,
  }));
}

// --- regions -------------------------------------------------------------------------------

/** The name of the region picked automatically (see preferredRegion in net.js), or null. */
function automatic() {
  return preferredRegion(regionsOf(S.regions))?.region.region || null;
}

/** The region to play through: the one chosen while it answers, else the automatic one. */
function pickedRegion() {
  const chosen = S.chosen && S.regions.some((r) => r.region === S.chosen && r.rtt !== null);
  return chosen ? S.chosen : automatic();
}

/** The node process to play through: one of the picked region's, the least loaded (see
 *  pickProcess in net.js), or null when no region answers. */
function chosenRegion() {
  const region = pickedRegion();
  return region ? pickProcess(S.regions, region) : null;
}

/** How the page names a process: its region, with the node id where the region has several. */
function where(process) {
  const several = S.regions.filter((r) => r.region === process.region).length > 1;
  return several ? `${process.region} (${process.node})` : process.region;
}

async function measure() {
  $("#region-note").textContent = "Measuring the round trip to every region…";
  try {
    if (!S.regions.length) S.regions = await fetchRegions("");
    S.regions = await measureRegions(S.regions);
  } catch (error) {
    $("#region-note").textContent = `Cannot list the regions: ${error.message}`;
    return;
  }
  renderRegions();
}

function renderRegions() {
  const pick = pickedRegion();
  const preferred = preferredRegion(regionsOf(S.regions));
  const auto = preferred?.region || null;
  const rows = regionsOf(S.regions).map((r) => {
    const input = h("input", {
      type: "radio",
      name: "region",
      value: r.region,
      checked: pick === r.region,
      disabled: r.rtt === null,
      on: { change: () => { S.chosen = r.region; renderRegions(); } },
    });
    const nodes = r.processes.map((p) => p.node);
    return h(
      "label",
      { class: ["region-row", r.rtt === null ? "down" : ""], dataset: { region: r.region, processes: String(nodes.length) } },
      input,
      h("span", { class: "region-name", text: r.region }),
      nodes.length === 1
        ? h("span", { class: "muted", text: nodes[0] })
        : h("span", { class: "muted", text: `${nodes.length} processes`, title: `${nodes.join(", ")}: you play through the least loaded that answers` }),
      h("span", { class: "rtt", dataset: { rtt: r.rtt === null ? "" : r.rtt.toFixed(1) }, text: formatRtt(r.rtt) }),
      h("span", { class: "region-tags" },
        r.opened ? h("span", { class: "badge", text: "this page", title: "the region of this page's address" }) : null,
        auto?.region === r.region ? h("span", { class: "badge ok", dataset: { auto: "1" }, text: "automatic" }) : null),
    );
  });
  fill($("#region-list"), h("legend", { class: "sr-only", text: "Regions" }), rows);
  const note = $("#region-note");
  if (!pick) note.textContent = "No region answers right now. Try measuring again.";
  else if (!S.chosen || S.chosen === auto?.region) note.textContent = `You will play through ${pick}: ${preferred.reason}`;
  else note.textContent = `You chose ${pick}. Automatic: ${auto?.region}, because ${preferred.reason}`;
  note.dataset.region = pick || "";
  renderRegionSwitch();
}

function renderRegionSwitch() {
  const select = $("#region-switch");
  const current = S.conn?.region.region;
  fill(select, regionsOf(S.regions).map((r) => h("option", {
    value: r.region,
    selected: r.region === current,
    disabled: r.rtt === null && r.region !== current,
    text: `${r.region} (${formatRtt(r.rtt)})`,
  })));
}

// --- logging in ------------------------------------------------------------------------------

async function submitLogin(register) {
  const name = $("#login-name").value.trim();
  const password = $("#login-password").value;
  const error = $("#login-error");
  error.textContent = "";
  const nameProblem = register ? checkName(name) : "";
  $("#login-name").setCustomValidity(nameProblem);
  if (nameProblem) error.textContent = nameProblem;
  if (!$("#login-form").reportValidity()) return;
  const region = chosenRegion();
  if (!region) {
    error.textContent = "No region can be reached. Measure again, or try later.";
    return;
  }
  for (const button of $("#login-form").querySelectorAll("button")) button.disabled = true;
  try {
    if (register) {
      await api(`${region.url}/api/register`, { method: "POST", body: { name, password, home: region.region } });
    }
    const reply = await api(`${region.url}/api/login`, { method: "POST", body: { name, password } });
    S.token = reply.token;
    S.resume = "";
    $("#login-password").value = "";
    await connect(region, { token: S.token });
    if (register) banner(`Welcome, ${reply.name}! Your home region is ${reply.home}.`, "ok");
  } catch (e) {
    error.textContent = loginError(e, region);
  } finally {
    for (const button of $("#login-form").querySelectorAll("button")) button.disabled = false;
  }
}

const NAME_RULE = "Names have 3 to 20 characters, each a letter (A-Z, a-z), a digit, _ or -.";

/** "" if `name` is a valid player name, else what is wrong with it and the rule. */
function checkName(name) {
  const bad = [...new Set(name.replace(/[A-Za-z0-9_-]/g, ""))];
  if (bad.length) {
    const shown = bad.map((c) => (c === " " ? "a space" : `“${c}”`));
    return `${NAME_RULE} This one has ${shown.join(", ")}.`;
  }
  if (name.length < 3) return `${NAME_RULE} This one is too short (${name.length}).`;
  if (name.length > 20) return `${NAME_RULE} This one is too long (${name.length}).`;
  return "";
}

function loginError(e, region) {
  const known = {
    name_taken: "That name is taken. Pick another, or log in if it is yours.",
    // The server does not tell an unknown name from a wrong password (docs/security.md).
    bad_credentials: "Wrong name or password. New here? Register the name first.",
    rate_limited: `Too many attempts: ${e.message || "wait a moment and try again"}.`,
    draining: `${region.region} is shutting down; pick another region.`,
    weak_password: "Passwords have at least 8 characters.",
    network: `Cannot reach ${region.region}: ${e.message}. Pick another region or measure again.`,
  };
  return known[e.code] || e.message || String(e);
}

// --- the connection --------------------------------------------------------------------------

/** Open /ws on `region` and say hello; on success it becomes the session's connection. */
async function connect(region, hello) {
  const conn = new Connection(region, {
    onPush: (push) => { if (S.conn === conn) onPush(push); },
    onClose: (code, reason) => onClose(conn, code, reason),
  });
  const reply = await conn.open(hello);
  const old = S.conn;
  S.conn = conn;
  if (old && old !== conn) old.retire();
  S.you = reply.you;
  S.resume = reply.resume;
  S.reconnecting = false;
  store();
  connected(reply);
  return reply;
}

function connected(reply) {
  const region = S.conn.region;
  const rtt = S.regions.find((r) => r.node === region.node)?.rtt;
  $("#conn-status").textContent = `Connected to ${region.region} (${region.node})${rtt ? `, ${formatRtt(rtt)}` : ""}`;
  $("#conn-status").className = "conn-status ok";
  document.body.dataset.region = region.region;
  document.body.dataset.node = region.node;
  $("#account-name").textContent = S.you.name;
  show($("#account"), true);
  renderRegionSwitch();
  game.setConnected(true);
  if (S.you.must_rename) askRename(mustRenameText());
  const live = reply.games || [];
  if (S.watching) {
    request("watch", { game: S.watching }).then((r) => onGame(r.game), () => { S.watching = null; });
  }
  if (!live.length && !S.watching && (S.screen === "login" || (S.screen === "game" && S.current && !S.games.get(S.current)?.result))) {
    showScreen("lobby");
  }
  refreshLists();
}

function onClose(conn, code, reason) {
  if (conn !== S.conn) return;
  S.conn = null;
  game.setConnected(false);
  const final = FINAL_CLOSES[code];
  if (final) {
    finalClose(final, reason, conn.region);
    return;
  }
  reconnect(conn.region, code, reason);
}

function finalClose(kind, reason, region) {
  $("#conn-status").textContent = "Not connected";
  $("#conn-status").className = "conn-status down";
  if (kind === "moved") {
    banner("Your session continued in another window or tab; this one stopped.", "warn", {
      sticky: true,
      id: "final-close",
      actions: [["Continue here", () => connect(chosenRegion() || region, { token: S.token }).catch(() => sessionOver("Could not take the session back; please log in again."))]],
    });
    return;
  }
  const where = /region ([A-Za-z0-9_-]+)/.exec(reason || "")?.[1];
  const texts = {
    logged_in_elsewhere: `You logged in somewhere else${where ? ` (region ${where})` : ""}. This window has stopped playing for you; your games go on there.`,
    bad_token: `Your session has ended (${reason || "logged out"}). Please log in again.`,
    disabled: "This account has been disabled.",
    protocol: `The server refused this page's messages (${reason}). Reload the page.`,
  };
  sessionOver(texts[kind] || reason, kind === "logged_in_elsewhere" ? "warn" : "error");
}

/** The connection dropped: resume the session on another process of the same region if one
 *  answers, else on the nearest region that answers (the lost process goes last in the first
 *  round; see failoverOrder in net.js). */
async function reconnect(lost, code, reason) {
  if (S.reconnecting) return;
  S.reconnecting = true;
  document.getElementById("reconnected")?.remove(); // an old "reconnected" must not sit above this
  const inGame = S.current && S.games.get(S.current)?.status === "live";
  $("#conn-status").textContent = `Connection to ${where(lost)} lost; reconnecting…`;
  $("#conn-status").className = "conn-status warn";
  const note = banner(
    `Connection to ${where(lost)} lost${code === 4000 ? " (the server is shutting down)" : ""}. Reconnecting${inGame ? "; your game is kept" : ""}…`,
    "warn",
    { sticky: true, id: "reconnecting" },
  );
  const started = Date.now();
  for (let round = 0; Date.now() - started < GRACE_MS; round += 1) {
    if (round > 0) await sleep(Math.min(500 * 2 ** round, 8000));
    let measured;
    try {
      measured = await measureRegions(S.regions, { tries: 1, timeout: 1500 });
    } catch {
      continue;
    }
    S.regions = sortByRtt(S.regions.map((r) => ({ ...r, rtt: measured.find((m) => m.node === r.node)?.rtt ?? null })));
    const candidates = failoverOrder(S.regions, lost, { lostLast: round === 0 });
    let refused = 0;
    for (const region of candidates) {
      try {
        await resumeOn(region);
        note.remove();
        banner(`Connection to ${where(lost)} lost; reconnected to ${where(region)}${inGame ? ", your game goes on" : ""}.`, "ok", { id: "reconnected" });
        return;
      } catch (error) {
        if (error.code === "unauthenticated") refused += 1;
      }
    }
    if (candidates.length && refused === candidates.length) {
      note.remove();
      S.reconnecting = false;
      sessionOver("Your session could not be resumed (it expired). Please log in again.");
      return;
    }
  }
  note.remove();
  S.reconnecting = false;
  sessionOver(`No region could be reached for ${GRACE_MS / 1000} s, so your session has ended. Please log in again.`);
}

/** What this page last showed of each of your games ({gid: {ply, head}}): sent in hello so
 *  that a region that lacks a move shown here says so with a rollback notice
 *  (docs/protocol.md). Live games first, then the newest finished ones: a time-out shown here
 *  can be beaten by a move made in time in a region this page could not hear. */
function seenGames() {
  // Live games you play, then finished games you played or watched: a time-out you were shown
  // can be beaten by a move made in time elsewhere, and the node you move to then tells you.
  const shown = [...S.games.values()].filter((push) => push.head !== undefined);
  const live = shown.filter((push) => push.status === "live" && push.you !== null && push.you !== undefined);
  const finished = shown.filter((push) => push.status === "finished").reverse();
  const seen = {};
  for (const push of [...live, ...finished].slice(0, MAX_SEEN_GAMES)) {
    seen[push.game] = { ply: push.ply, head: push.head };
    const lost = S.lost.get(push.game);
    if (lost) seen[push.game].lost = lost;
  }
  return seen;
}

/** A rollback about a line of a game: `settled` false means its ply is only a bound, so the
 *  line is reported as `lost` in the next hellos until a settled notice about it (the same
 *  `line.head`) names where it really left (docs/protocol.md, *Who is told of a rollback*). */
function noteRollback(push) {
  const line = push.line; // absent on notices to the game's audience: exact, nothing to carry
  if (!line) return;
  const before = S.lost.get(push.game) || [];
  const lost = before.filter((item) => item.head !== line.head);
  if (push.settled === false) {
    const told = Math.min(push.ply, ...before.filter((item) => item.head === line.head).map((item) => item.told));
    lost.push({ ply: line.ply, head: line.head, told });
  }
  if (lost.length) S.lost.set(push.game, lost.slice(-MAX_LOST_LINES));
  else S.lost.delete(push.game);
}

/** hello with the resume token, then (if that is refused) with the session token. */
async function resumeOn(region) {
  try {
    return await connect(region, { resume: S.resume, seen: seenGames() });
  } catch (error) {
    if (error.code !== "unauthenticated" || !S.token) throw error;
    return connect(region, { token: S.token, seen: seenGames() });
  }
}

async function switchRegion(name) {
  if (name === S.conn?.region.region) return;
  const region = pickProcess(S.regions, name) || S.regions.find((r) => r.region === name);
  if (!region) return;
  const old = S.conn;
  if (old) old.retired = true; // the server closes it (4104) once the new one says hello
  try {
    await connect(region, { resume: S.resume, seen: seenGames() });
    S.chosen = region.region;
    store();
    banner(`You now play through ${region.region}.`, "ok");
  } catch (error) {
    if (old) old.retired = false;
    banner(`Could not switch to ${region.region}: ${error.message}`, "error");
    renderRegionSwitch();
  }
}

function sessionOver(text, kind = "error") {
  if (S.conn) S.conn.retire();
  S.conn = null;
  S.token = "";
  S.resume = "";
  S.you = null;
  S.current = null;
  S.watching = null;
  S.games.clear();
  store();
  show($("#account"), false);
  fill($("#banners"));
  $("#conn-status").textContent = "Not connected";
  $("#conn-status").className = "conn-status down";
  banner(text, kind, { sticky: true, id: "session-over" });
  showScreen("login");
  measure();
}

async function logout() {
  const conn = S.conn;
  if (conn) conn.retired = true; // the server closes it (4101) as the session ends
  try {
    if (conn) await api(`${conn.region.url}/api/logout`, { method: "POST", body: {}, token: S.token });
  } catch {
    // the session ends with the grace period anyway
  }
  if (conn) conn.retire();
  S.conn = null;
  S.token = "";
  sessionOver("You have logged out.", "info");
}

// --- pushes ----------------------------------------------------------------------------------

function onPush(push) {
  switch (push.type) {
    case "lobby":
      S.lobby = new Map(push.players.map((p) => [p.name, p]));
      renderLobby();
      break;
    case "lobby_update":
      for (const name of push.gone) S.lobby.delete(name);
      for (const p of push.changed) S.lobby.set(p.name, p);
      renderLobby();
      break;
    case "invites": {
      const before = new Set(S.invites.incoming.map((i) => i.iid));
      const gone = S.invites.outgoing.filter((i) => !push.outgoing.some((o) => o.iid === i.iid));
      S.invites = { incoming: push.incoming, outgoing: push.outgoing };
      for (const i of gone) invitationGone(i);
      if (S.screen === "game" && game.push?.status === "finished") game.render();
      for (const i of push.incoming) {
        if (!before.has(i.iid) && S.screen !== "lobby") {
          const rematch = S.screen === "game" && game.push?.status === "finished" && game.push.players.includes(i.from);
          banner(`${i.from} ${rematch ? "offers a rematch" : `invites you to ${i.resume ? "resume a saved game" : "a game"}`}.`, "info", {
            id: `invite-${i.iid}`,
            actions: [["Accept", () => accept(i.iid)], ["Decline", () => decline(i.iid)]],
          });
        }
      }
      renderLobby();
      break;
    }
    case "game":
      onGame(push);
      break;
    case "rollback":
      noteRollback(push);
      banner(
        `The game went back to move ${push.ply}: ${push.reason}. It goes on from there.`,
        "warn",
        { sticky: true, id: `rollback-${push.game}` },
      );
      break;
    case "opponent":
      if (push.game === game.gid) game.opponent(push.state);
      banner(push.state === "dropped"
        ? `${push.name}'s connection dropped; they have 60 s to come back.`
        : `${push.name} is back.`, push.state === "dropped" ? "warn" : "ok", { id: `opponent-${push.game}` });
      break;
    case "chat":
      onChat(push);
      break;
    case "notice":
      onNotice(push);
      break;
    case "drain":
      followDrain(push);
      break;
    case "error":
      banner(push.error?.code === "rate_limited" ? "You are sending too fast; slow down." : push.error?.message || "error", "warn");
      break;
    default:
      break;
  }
}

/** The node is shutting down (docs/protocol.md, Drain): continue the session at the region it
 *  names with the fresh resume token, saying so once. Requests made meanwhile wait for the new
 *  connection (`request`); if the move fails, the usual reconnection takes over. */
async function followDrain(push) {
  const old = S.conn;
  if (!old || S.reconnecting || old.retired) return;
  const url = push.url.replace(/\/$/, "");
  const known = S.regions.find((r) => r.url === url);
  const target = { ...(known || { region: push.region, node: push.region, rtt: null }), url };
  old.retired = true; // the old node closes it (4104) once the target took the session
  S.resume = push.resume;
  if (S.chosen === old.region.region && push.region !== old.region.region) S.chosen = null;
  store();
  banner(push.message || `${old.region.region} is shutting down; moving you to ${push.region}.`, "info", { id: "drain" });
  const following = connect(target, { resume: push.resume, seen: seenGames() });
  S.following = following;
  try {
    await following;
  } catch {
    old.retire();
    if (S.conn === old) S.conn = null;
    reconnect(old.region, 4000, "draining");
  } finally {
    if (S.following === following) S.following = null;
  }
}

function onGame(push) {
  S.games.set(push.game, push);
  const mine = push.you !== null && push.you !== undefined;
  if (mine) {
    if (push.status === "live" && S.current !== push.game) {
      gameBegins(push);
      S.current = push.game;
      if (S.watching) request("unwatch").catch(() => {});
      S.watching = null;
      store();
    }
    if (push.game === S.current) {
      game.update(push);
      if (push.status === "live" && S.screen !== "game") showScreen("game");
      if (push.status === "saved" || push.status === "parked") {
        banner(push.status === "saved" ? "The game was saved; either of you can resume it from Saved games." : "The game was parked after a merge; resume it from Saved games.", "info");
        S.current = null;
        refreshLists();
        showScreen("lobby");
      }
      if (push.status === "finished") refreshLists();
    }
  } else if (push.game === S.watching) {
    game.update(push);
    if (S.screen !== "game") showScreen("game");
  }
}

function onChat(push) {
  if (push.game) {
    if (push.game === game.gid) game.addChat(push);
    if (S.screen !== "game" || push.game !== game.gid) banner(`${push.from} (table): ${push.text}`, "info");
    return;
  }
  addPrivate(push.from, push.to, push.text);
  if (S.screen !== "lobby") banner(`Message from ${push.from}: ${push.text}`, "info");
}

function addPrivate(from, to, text) {
  const log = $("#private-chat");
  log.append(h("li", {}, h("strong", { text: from.toLowerCase() === me() ? `you → ${to}: ` : `${from}: ` }), text));
  log.scrollTop = log.scrollHeight;
}

function onNotice(push) {
  if (push.code === "must_rename") {
    askRename(mustRenameText());
    return;
  }
  if (push.code === "game_parked") {
    banner(`A merge parked one of your games: ${push.message}`, "warn", { sticky: true });
    refreshLists();
    return;
  }
  banner(push.message, "info", { sticky: true });
}

function mustRenameText() {
  return `While the regions could not talk to each other, the name ${S.you.name} was registered in two of them. ` +
    "The other registration came first, so that player keeps the name.";
}

function askRename(why) {
  const dialog = $("#rename-dialog");
  $("#rename-why").textContent = `${why} Your account, games and home region stay yours; only the name changes.`;
  $("#rename-error").textContent = "";
  if (!dialog.open) dialog.showModal();
}

async function submitRename(event) {
  event.preventDefault();
  const name = $("#rename-name").value.trim();
  const problem = checkName(name);
  if (problem) {
    $("#rename-error").textContent = problem;
    return;
  }
  try {
    const reply = await request("rename", { name });
    S.you = { ...S.you, ...reply.you };
    store();
    $("#account-name").textContent = S.you.name;
    $("#rename-dialog").close();
    banner(`You are now ${S.you.name}.`, "ok");
  } catch (error) {
    $("#rename-error").textContent = error.code === "name_taken" ? "That name is taken too." : error.message;
  }
}

// --- the lobby -------------------------------------------------------------------------------

// --- invitations: "sent", then "accepted" (or declined) -----------------------------------------

/** The time control picked in the lobby, as invite's `clock` (null: none). */
function chosenClock() {
  return clockField(/** @type {HTMLSelectElement} */ ($("#time-control")).value);
}

/** A rematch keeps the finished game's time control. */
function sameClock(push) {
  const clock = push?.clock;
  return clock ? { initial_s: Math.round(clock.initial_ms / 1000), increment_s: Math.round(clock.increment_ms / 1000) } : null;
}

async function invite(name, clock = chosenClock()) {
  try {
    const reply = await request("invite", clock ? { to: name, clock } : { to: name });
    S.sent.set(name.toLowerCase(), { name, iid: reply.invite.iid });
    if (S.screen === "game") game.render();
    banner(`Invitation sent to ${name}${clock ? ` (${clockLabel(clock)})` : ""}. Waiting for ${name} to accept…`, "info", {
      sticky: true,
      id: "invite-status",
      actions: [["Withdraw", () => withdraw(reply.invite.iid)]],
    });
  } catch (e) {
    banner(`Invitation not sent: ${e.message}`, "error", { id: "invite-status" });
  }
}

function withdraw(iid) {
  S.withdrawn.add(iid);
  return request("retract", { invite: iid }).then(
    () => document.getElementById("invite-status")?.remove(),
    (e) => banner(e.message, "error"),
  );
}

/** One of our invitations left the list: accepted (a game push follows), withdrawn, or
 *  declined. Wait a moment for the game before calling it declined. */
function invitationGone(invitation) {
  const key = invitation.to.toLowerCase();
  if (S.withdrawn.delete(invitation.iid)) {
    S.sent.delete(key);
    return;
  }
  setTimeout(() => {
    const sent = S.sent.get(key);
    if (!sent || sent.iid !== invitation.iid) return; // a game began meanwhile
    S.sent.delete(key);
    banner(`${invitation.to} declined your invitation (or it lapsed).`, "warn", { id: "invite-status" });
    if (S.screen === "game") game.render();
  }, DECLINE_WAIT_MS);
}

/** A game of ours begins: say who accepted and who moves first. */
function gameBegins(push) {
  const opponent = push.players[1 - push.you];
  const first = push.ply === 0 ? (push.to_move === push.you ? "You move first." : `${opponent} moves first.`) : "";
  const ours = S.sent.get(opponent.toLowerCase());
  document.getElementById("invite-status")?.remove();
  if (ours) {
    S.sent.delete(opponent.toLowerCase());
    banner(`${opponent} accepted your invitation. ${first}`, "ok", { id: "invite-accepted" });
  } else {
    banner(`Your game with ${opponent} begins. ${first}`, "ok", { id: "invite-accepted" });
  }
}

const lobbyActions = {
  invite: (name) => invite(name),
  watchPlayer: async (name) => {
    await refreshLive();
    const g = S.live.find((x) => x.names.some((n) => n.toLowerCase() === name.toLowerCase()));
    if (g) watch(g.gid);
    else banner(`No game of ${name}'s is known here yet.`, "warn");
  },
  message: (name) => {
    $("#private-to").value = name;
    $("#private-text").focus();
  },
  accept: (iid) => accept(iid),
  decline: (iid) => decline(iid),
  retract: (iid) => withdraw(iid),
  watch: (gid) => watch(gid),
  open: (gid) => {
    const push = S.games.get(gid);
    if (push) {
      S.current = gid;
      game.update(push);
      showScreen("game");
    }
  },
  resume: (gid, other) => request("invite", { to: other, resume: gid }).then(
    () => banner(`You invited ${other} to resume the game.`, "ok"),
    (e) => banner(`Invitation not sent: ${e.message}`, "error"),
  ),
  replay: (gid) => openReplay(gid),
};

function accept(iid) {
  return request("accept", { invite: iid }).catch((e) => banner(`Could not accept: ${e.message}`, "error"));
}

function decline(iid) {
  return request("decline", { invite: iid }).catch((e) => banner(e.message, "error"));
}

async function watch(gid) {
  try {
    const reply = await request("watch", { game: gid });
    S.watching = gid;
    store();
    onGame(reply.game);
  } catch (e) {
    banner(`Cannot watch: ${e.message}`, "error");
  }
}

async function stopWatching() {
  S.watching = null;
  store();
  await request("unwatch").catch(() => {});
  showScreen("lobby");
  refreshLists();
}

function leaveGame() {
  if (S.watching) {
    stopWatching();
    return;
  }
  S.current = null;
  showScreen("lobby");
  refreshLists();
}

function renderLobby() {
  if (!S.you) return;
  const online = new Set([...S.lobby.keys()].map((n) => n.toLowerCase()));
  renderPlayers($("#players tbody"), S.lobby, me(), S.invites, lobbyActions, S.ratings);
  $("#players-count").textContent = `(${S.lobby.size})`;
  renderInvites($("#invites"), S.invites, lobbyActions);
  renderLiveGames($("#live-games"), S.live, me(), lobbyActions);
  renderSaved($("#saved-games"), S.saved, me(), online, lobbyActions);
  renderFinished($("#finished-games"), S.finished, me(), lobbyActions);
  const to = $("#private-to");
  const current = to.value;
  fill(to, [...S.lobby.keys()].filter((n) => n.toLowerCase() !== me()).sort().map((n) => h("option", { value: n, text: n, selected: n === current })));
}

async function refreshLive() {
  if (!S.conn) return;
  try {
    S.live = (await api(`${S.conn.region.url}/api/live`, { timeout: 5000 })).games;
  } catch {
    return;
  }
  renderLobby();
}

async function refreshLists() {
  if (!S.conn || !S.you) return;
  const base = S.conn.region.url;
  const [saved, finished] = await Promise.allSettled([
    request("saved"),
    api(`${base}/api/games?player=${encodeURIComponent(S.you.name)}`, { timeout: 5000 }),
  ]);
  if (saved.status === "fulfilled") S.saved = saved.value.games;
  if (finished.status === "fulfilled") S.finished = finished.value.games;
  await Promise.all([refreshLive(), refreshRatings()]);
  renderLobby();
}

/** The ratings of the players in the lobby (and yours). */
async function refreshRatings() {
  if (!S.conn) return;
  const names = [...new Set([S.you?.name, ...S.lobby.keys()].filter(Boolean))].slice(0, MAX_RATED_NAMES);
  try {
    const reply = await api(`${S.conn.region.url}/api/ratings?names=${encodeURIComponent(names.join(","))}`, { timeout: 5000 });
    S.ratings = new Map(reply.ratings.map((r) => [r.name.toLowerCase(), r]));
  } catch {
    // the list keeps the ratings it had
  }
}

// --- the leaderboard -----------------------------------------------------------------------------

async function openLeaderboard() {
  const back = S.screen === "leaderboard" ? (S.you ? "lobby" : "login") : S.screen;
  S.leaderboardBack = back;
  showScreen("leaderboard");
  if (location.pathname !== "/leaderboard") history.replaceState(null, "", "/leaderboard");
  const base = S.conn?.region.url || "";
  try {
    const reply = await api(`${base}/api/ratings?limit=${LEADERBOARD_ROWS}`, { timeout: 5000 });
    renderLeaderboard($("#leaderboard tbody"), reply.ratings, me());
    $("#leaderboard").dataset.digest = reply.digest;
    $("#leaderboard").dataset.region = reply.region;
  } catch (e) {
    banner(`Cannot load the leaderboard: ${e.message}`, "error");
  }
  checkAgreement();
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let agreementRecheck;

/** Ask every region for its table's digest and say whether they agree; while they do not and
 * the leaderboard stays open, ask again (`again`: a repeated ask keeps the last answer shown). */
async function checkAgreement(again = false) {
  clearTimeout(agreementRecheck);
  const note = $("#ratings-agreement");
  if (!again) note.textContent = "Asking every region for its table…";
  const answers = await Promise.all(S.regions.map(async (r) => {
    try {
      return { region: where(r), digest: (await api(`${r.url}/api/ratings?limit=0`, { timeout: 3000 })).digest };
    } catch {
      return { region: where(r), digest: null };
    }
  }));
  const up = answers.filter((a) => a.digest !== null);
  const digests = new Set(up.map((a) => a.digest));
  const down = answers.filter((a) => a.digest === null).map((a) => a.region);
  const agree = digests.size === 1 && !down.length;
  note.dataset.agree = String(agree);
  if (!agree && S.screen === "leaderboard") {
    agreementRecheck = setTimeout(() => { if (S.screen === "leaderboard") checkAgreement(true); }, AGREEMENT_RECHECK_MS);
  }
  if (digests.size === 1) {
    const all = regionsOf(S.regions).length === answers.length ? `All ${up.length} regions` : `All ${up.length} node processes`;
    note.textContent = `${up.length === answers.length ? all : up.map((a) => a.region).join(" and ")} derive the same table (digest ${[...digests][0].slice(0, 8)}).` +
      (down.length ? ` ${down.join(", ")} did not answer.` : "");
  } else {
    note.textContent = `The regions' tables differ for now (${up.map((a) => `${a.region} ${String(a.digest).slice(0, 8)}`).join(", ")}): some finished games have not reached every region yet.`;
  }
}

function closeLeaderboard() {
  history.replaceState(null, "", "/");
  const back = S.leaderboardBack || (S.you ? "lobby" : "login");
  showScreen(back === "leaderboard" ? (S.you ? "lobby" : "login") : back);
  if (S.screen === "lobby") refreshLists();
}

async function openReplay(gid) {
  const base = S.conn?.region.url || "";
  try {
    const data = await api(`${base}/api/replay/${encodeURIComponent(gid)}`, { timeout: 10000 });
    replay.open(data, S.you?.name);
    showScreen("replay");
    $("#replay-next").focus();
  } catch (e) {
    banner(`Cannot open the replay: ${e.message}`, "error");
  }
}

// --- start -----------------------------------------------------------------------------------

function wire() {
  setUpRules($("#rules-dialog"));
  fill($("#time-control"), PRESETS.map(([value, label]) => h("option", { value, text: label })));
  $("#leaderboard-open").addEventListener("click", () => openLeaderboard());
  $("#leaderboard-close").addEventListener("click", () => closeLeaderboard());
  $("#login-name").addEventListener("input", () => $("#login-name").setCustomValidity(""));
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    submitLogin(false);
  });
  $("#register-button").addEventListener("click", () => submitLogin(true));
  $("#measure").addEventListener("click", () => measure());
  $("#use-automatic").addEventListener("click", () => {
    S.chosen = null;
    renderRegions();
  });
  $("#logout").addEventListener("click", () => logout());
  $("#region-switch").addEventListener("change", (event) => switchRegion(event.target.value));
  $("#rename-form").addEventListener("submit", submitRename);
  $("#rename-dialog").addEventListener("cancel", (event) => event.preventDefault());
  $("#private-chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const to = $("#private-to").value;
    const input = $("#private-text");
    const text = input.value.trim();
    if (!to || !text) return;
    request("chat", { to, text }).then(
      () => { addPrivate(S.you.name, to, text); input.value = ""; },
      (e) => banner(`Message not sent: ${e.message}`, "error"),
    );
  });
  setInterval(() => {
    if (S.screen === "lobby") refreshLists();
  }, LIVE_POLL_MS);
  setInterval(remeasureDown, REMEASURE_MS);
}

/** A region that did not answer may be back (a restarted node): measure again now and then, so
 *  the top bar's region switch offers it once it answers. */
async function remeasureDown() {
  if (!S.conn || S.reconnecting || !S.regions.some((r) => r.rtt === null)) return;
  const measured = await measureRegions(S.regions, { tries: 1, timeout: 1500 });
  S.regions = S.regions.map((r) => ({ ...r, rtt: measured.find((m) => m.node === r.node)?.rtt ?? null }));
  renderRegionSwitch();
}

async function start() {
  wire();
  showScreen("login");
  await measure();
  await resumeSaved();
  // A replay link (/?replay=GID, from a game's summary) opens the replay, logged in or not.
  const replayGid = new URLSearchParams(location.search).get("replay");
  if (replayGid) await openReplay(replayGid);
  else if (location.pathname === "/leaderboard") await openLeaderboard();
  else if (!S.you) $("#login-name").focus();
}

/** Resume this tab's session (kept in sessionStorage) after a reload. */
async function resumeSaved() {
  const saved = JSON.parse(sessionStorage.getItem(STORE_KEY) || "null");
  if (saved && saved.token) {
    S.token = saved.token;
    S.resume = saved.resume;
    S.chosen = saved.chosen;
    S.watching = saved.watching || null;
    $("#login-name").value = saved.name || "";
    const region = S.regions.find((r) => r.node === saved.node && r.rtt !== null)
      || pickProcess(S.regions, saved.region)
      || chosenRegion();
    if (region) {
      try {
        await resumeOn(region);
      } catch {
        S.token = "";
        store();
      }
    }
  }
}

start();
