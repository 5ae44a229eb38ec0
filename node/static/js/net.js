// HTTP helpers, the round-trip measurement behind the region chooser, and the choice of one of
// a region's node processes.

export class ApiError extends Error {
  constructor(code, message, status = 0) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/**
 * fetch() with a timeout; network failures become ApiError("network").
 * @param {string} url
 * @param {{method?: string, body?: any, token?: string, timeout?: number}} [options]
 */
async function request(url, { method = "GET", body, token, timeout = 10000 } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeout);
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    return await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      signal: controller.signal,
    });
  } catch (error) {
    const what = controller.signal.aborted ? `no answer within ${timeout / 1000} s` : "cannot connect";
    throw new ApiError("network", `${new URL(url).host}: ${what}`);
  } finally {
    clearTimeout(timer);
  }
}

/** JSON request; a protocol error body ({"error": {code, message}}) becomes an ApiError. */
export async function api(url, options = {}) {
  const response = await request(url, options);
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = (payload && payload.error) || {};
    throw new ApiError(error.code || `http_${response.status}`, error.message || response.statusText, response.status);
  }
  return payload;
}

export async function text(url, options = {}) {
  const response = await request(url, options);
  if (!response.ok) throw new ApiError(`http_${response.status}`, response.statusText, response.status);
  return response.text();
}

/** The node processes of the cluster as the node at `base` knows them (a region may run
 *  several); `opened` marks those of that node's own region (for the page: the region whose
 *  URL was opened); `players`: a process's connections as last published (null: unknown). */
export async function fetchRegions(base = "") {
  const reply = await api(`${base}/api/regions`, { timeout: 5000 });
  return reply.regions.map((r) => ({
    region: r.region,
    node: r.node,
    url: r.url.replace(/\/$/, ""),
    opened: r.region === reply.here,
    players: typeof r.players === "number" ? r.players : null,
  }));
}

/**
 * The regions of a list of processes, in the list's order: {region, opened, rtt, processes},
 * rtt the best of its processes that answered (null: none did).
 */
export function regionsOf(processes) {
  const regions = new Map();
  for (const p of processes) {
    if (!regions.has(p.region)) regions.set(p.region, { region: p.region, opened: false, rtt: null, processes: [] });
    const region = regions.get(p.region);
    region.processes.push(p);
    region.opened = region.opened || p.opened;
    if (p.rtt !== null && p.rtt !== undefined && (region.rtt === null || p.rtt < region.rtt)) region.rtt = p.rtt;
  }
  return [...regions.values()];
}

// A process counts as least loaded while within this many players (or this share) of the least
// loaded one; the page picks at random among those, so that people logging in at the same
// moment, who all see the same (up to 3 s old) figures, do not all land on one process.
export const LOAD_SLACK_PLAYERS = 5;
export const LOAD_SLACK_SHARE = 0.1;

/**
 * The process of `region` to play through: one that answers (rtt not null), not `avoid` (a
 * node id) while another answers, among the least loaded by published players (see above),
 * chosen with `random` (0 <= x < 1). Null when none of the region's processes answers.
 */
export function pickProcess(processes, region, { avoid = null, random = Math.random } = {}) {
  let up = processes.filter((p) => p.region === region && p.rtt !== null && p.rtt !== undefined);
  if (up.some((p) => p.node !== avoid)) up = up.filter((p) => p.node !== avoid);
  if (!up.length) return null;
  const load = (p) => (p.players === null || p.players === undefined ? 0 : p.players);
  const least = Math.min(...up.map(load));
  const near = up.filter((p) => load(p) <= least + Math.max(LOAD_SLACK_PLAYERS, least * LOAD_SLACK_SHARE));
  return near[Math.min(near.length - 1, Math.floor(random() * near.length))];
}

// Another region replaces the one whose URL was opened only when it is clearly faster: by at
// least this many milliseconds and this factor (loopback and one city differ by noise alone).
export const CLEARLY_FASTER_MS = 20;
export const CLEARLY_FASTER_FACTOR = 2;

/**
 * The region to play through, and why: the region whose URL was opened, unless another is
 * clearly faster (see above) or it does not answer; then the fastest. `regions` are measured
 * (rtt null: no answer; regionsOf gives a region the rtt of its fastest process). Returns
 * {region, reason} or null when no region answers.
 */
export function preferredRegion(regions) {
  const up = sortByRtt(regions.filter((r) => r.rtt !== null));
  if (!up.length) return null;
  const fastest = up[0];
  const opened = up.find((r) => r.opened);
  if (!opened) {
    return { region: fastest, reason: `${fastest.region} answers fastest (${formatRtt(fastest.rtt)}).` };
  }
  const clearly = fastest.rtt + CLEARLY_FASTER_MS <= opened.rtt && fastest.rtt * CLEARLY_FASTER_FACTOR <= opened.rtt;
  if (fastest !== opened && clearly) {
    return {
      region: fastest,
      reason: `${fastest.region} (${formatRtt(fastest.rtt)}) is clearly faster than ${opened.region} (${formatRtt(opened.rtt)}), the region of this page's address.`,
    };
  }
  const others = fastest === opened ? "" : ` ${fastest.region} (${formatRtt(fastest.rtt)}) is not faster by ${CLEARLY_FASTER_MS} ms and ${CLEARLY_FASTER_FACTOR}×, so the difference is noise.`;
  return {
    region: opened,
    reason: `${opened.region} is the region of this page's address (${formatRtt(opened.rtt)}).${others}`,
  };
}

/**
 * Time GET /healthz on every region: `tries` round trips each, in parallel across regions; the
 * median counts (the first one may include opening the connection). Unreachable regions get
 * rtt null. Returns new objects sorted nearest first.
 */
export async function measureRegions(regions, { tries = 3, timeout = 2500 } = {}) {
  const measured = await Promise.all(
    regions.map(async (region) => {
      const samples = [];
      for (let i = 0; i < tries; i += 1) {
        const start = performance.now();
        try {
          const response = await request(`${region.url}/healthz`, { timeout });
          await response.text();
          if (!response.ok) break;
          samples.push(performance.now() - start);
        } catch {
          break;
        }
      }
      samples.sort((a, b) => a - b);
      const rtt = samples.length ? samples[Math.floor(samples.length / 2)] : null;
      return { ...region, rtt };
    }),
  );
  return sortByRtt(measured);
}

/**
 * Where to resume a session whose connection to process `lost` dropped, in order: the other
 * processes of its region that answer (least loaded first), then the other regions' processes
 * by round trip, then `lost` itself (it may be back); with `lostLast` false, `lost` comes right
 * after its region's other processes (later rounds: it may have restarted).
 */
export function failoverOrder(processes, lost, { lostLast = true } = {}) {
  const up = processes.filter((p) => p.rtt !== null && p.rtt !== undefined);
  const byLoad = (a, b) => (a.players ?? 0) - (b.players ?? 0) || a.rtt - b.rtt;
  const siblings = up.filter((p) => p.region === lost.region && p.node !== lost.node).sort(byLoad);
  const itself = up.filter((p) => p.node === lost.node);
  const others = sortByRtt(up.filter((p) => p.region !== lost.region));
  return lostLast ? [...siblings, ...others, ...itself] : [...siblings, ...itself, ...others];
}

export function sortByRtt(regions) {
  return [...regions].sort((a, b) => {
    if (a.rtt === null && b.rtt === null) return a.region.localeCompare(b.region);
    if (a.rtt === null) return 1;
    if (b.rtt === null) return -1;
    return a.rtt - b.rtt;
  });
}

export function wsUrl(base) {
  return `${base.replace(/^http/, "ws")}/ws`;
}

export function formatRtt(rtt) {
  if (rtt === null || rtt === undefined) return "unreachable";
  return rtt < 10 ? `${rtt.toFixed(1)} ms` : `${Math.round(rtt)} ms`;
}
