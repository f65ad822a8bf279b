// ShardGate integration test: the admin dashboard in headless Chromium.
//
//   node dashboard.js URL SCREENSHOT.png
//
// Opens URL (the admin listener's `/`) in Debian's Chromium (or
// $SHARDGATE_IT_CHROMIUM) through playwright-core, waits for two refreshes
// (the first rates need two snapshots), then prints one line
//   ready {"pools": [...], "data_sources": [...], "figures": {...}}
// and keeps watching. The caller puts load on the proxy then; once the
// figures show it (statements/s > 0, the total grown, p99 known, a heat
// cell lit) and a few more refreshes have drawn the charts, this saves a
// full-page screenshot and prints
//   done {"figures": {...}, ...}
// and exits 0. Exits 1 (after a screenshot, printing `timeout {...}`) when
// the figures do not change in time, 2 on any other failure.
"use strict";

const { chromium } = require("playwright-core");

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error("usage: node dashboard.js URL SCREENSHOT.png");
  process.exit(2);
}
const executablePath = process.env.SHARDGATE_IT_CHROMIUM || "/usr/bin/chromium";
const READY_TIMEOUT_MS = 30_000;
const CHANGE_TIMEOUT_MS = 60_000;
// Refreshes to wait once the figures changed, so the screenshot shows a line.
const MORE_REFRESHES = 3;

// What the page shows, read from its DOM (ids and data-* attributes).
function readPage() {
  const num = (id) => {
    const v = document.getElementById(id).dataset.value;
    return v === "" || v === undefined ? null : Number(v);
  };
  const text = (id) => document.getElementById(id).textContent;
  return {
    updates: Number(document.body.dataset.updates || 0),
    pools: [...document.querySelectorAll("[data-pool]")].map((el) => ({
      name: el.dataset.pool,
      role: el.dataset.role,
      health: el.dataset.health,
      lag: el.querySelector(".lag").textContent,
      visible: el.getBoundingClientRect().height > 0,
    })),
    data_sources: [...document.querySelectorAll(".node[data-ds]")].map((el) => el.dataset.ds),
    figures: {
      rate: num("kpi-rate"),
      rate_text: text("kpi-rate"),
      p99: num("kpi-p99"),
      p99_text: text("kpi-p99"),
      total: num("kpi-total"),
      heat: [...document.querySelectorAll("#heat td[data-ds]")]
        .map((td) => ({ ds: td.dataset.ds, table: td.dataset.table, rate: Number(td.dataset.rate), total: Number(td.dataset.total) }))
        .filter((c) => c.total > 0),
      status: text("status-text"),
      banner: document.getElementById("banner").classList.contains("show") ? text("banner") : null,
    },
  };
}

async function main() {
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    // Root in a container: Chromium's own sandbox cannot start there.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
  const errors = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    page.on("pageerror", (e) => errors.push(`page error: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(`console error: ${m.text()}`);
    });
    page.on("requestfailed", (r) => errors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    // Everything must come from the proxy itself (no external assets).
    const origin = new URL(url).origin;
    page.on("request", (r) => {
      if (!r.url().startsWith(origin) && !r.url().startsWith("data:")) errors.push(`external request: ${r.url()}`);
    });

    await page.goto(url, { waitUntil: "load" });
    await page.waitForFunction(() => Number(document.body.dataset.updates || 0) >= 2 && document.getElementById("kpi-rate").dataset.value !== "", null, {
      timeout: READY_TIMEOUT_MS,
      polling: 200,
    });
    const before = await page.evaluate(readPage);
    console.log("ready " + JSON.stringify({ ...before, errors }));

    const deadline = Date.now() + CHANGE_TIMEOUT_MS;
    let now = before;
    let changed = false;
    while (Date.now() < deadline) {
      await page.waitForTimeout(250);
      now = await page.evaluate(readPage);
      const f = now.figures;
      changed = f.rate > 0 && f.total > before.figures.total && f.p99 !== null && f.heat.some((c) => c.rate > 0);
      if (changed) break;
    }
    if (changed) {
      const until = now.updates + MORE_REFRESHES;
      await page.waitForFunction((n) => Number(document.body.dataset.updates || 0) >= n, until, { timeout: 20_000, polling: 200 });
      now = await page.evaluate(readPage);
    }
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log((changed ? "done " : "timeout ") + JSON.stringify({ ...now, before: before.figures, errors }));
    return changed ? 0 : 1;
  } finally {
    await browser.close();
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e && e.stack ? e.stack : String(e));
    process.exit(2);
  },
);
