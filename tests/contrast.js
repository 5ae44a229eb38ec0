// WCAG 2.1 AA for text, checked in the page by the browser tests (tests/web_browser.py):
// contrast at least 4.5:1 (3:1 for large text: 24 px, or 18.66 px bold) between the text colour
// and the background actually behind it (the nearest backgrounds, composited). Text faded with
// `opacity` counts as a failure (the page never fades text to show a state); disabled controls
// other than cards are exempt, as WCAG exempts inactive components. Returns the failures.
(scope) => {
    const parse = (text) => {
        const m = /rgba?\(([^)]+)\)/.exec(text);
        if (!m) return null;
        const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
        return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
    };
    const over = (top, below) => ({
        r: top.r * top.a + below.r * (1 - top.a),
        g: top.g * top.a + below.g * (1 - top.a),
        b: top.b * top.a + below.b * (1 - top.a),
        a: 1,
    });
    const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    const lum = (c) => 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
    const background = (el) => {
        const layers = [];
        for (let e = el; e; e = e.parentElement) {
            const bg = parse(getComputedStyle(e).backgroundColor);
            if (bg && bg.a > 0) { layers.push(bg); if (bg.a >= 1) break; }
        }
        let c = { r: 255, g: 255, b: 255, a: 1 };
        for (const layer of layers.reverse()) c = over(layer, c);
        return c;
    };
    const describe = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
        (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\s+/).join('.') : '');
    const failures = [];
    const root = document.querySelector(scope) || document.body;
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    const seen = new Set();
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const el = node.parentElement;
        if (!el || seen.has(el) || !node.textContent.trim()) continue;
        seen.add(el);
        if (!el.getClientRects().length || el.closest('.sr-only, [hidden], option, script, style')) continue;
        const style = getComputedStyle(el);
        if (style.visibility === 'hidden' || style.display === 'none') continue;
        if (el.closest('button:disabled:not(.card), input:disabled, select:disabled')) continue;
        let faded = false;
        for (let e = el; e; e = e.parentElement) if (Number(getComputedStyle(e).opacity) < 1) faded = true;
        const bg = background(el);
        const fg = over(parse(style.color), bg);
        const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
        const ratio = (hi + 0.05) / (lo + 0.05);
        const size = parseFloat(style.fontSize);
        const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
        const need = large ? 3 : 4.5;
        if (faded || ratio < need) {
            failures.push(`${describe(el)} "${node.textContent.trim().slice(0, 30)}": ` +
                (faded ? 'faded with opacity' : `${ratio.toFixed(2)} < ${need}`));
        }
    }
    return failures;
}
