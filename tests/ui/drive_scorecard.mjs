// Drive the served scorecard page in Debian's chromium (playwright-core, no downloaded browser) and print
// what a reader would see as one JSON object on stdout; tests/ui/test_scorecard_page.py asserts on it.
//
// usage: node tests/ui/drive_scorecard.mjs URL DIMENSION VALUES SCREENSHOT_DIR
//   URL          the page, http://127.0.0.1:PORT/analyses/ID/scorecard
//   DIMENSION    a declared dimension to request as a live slice, e.g. country
//   VALUES       its value(s), comma-separated, e.g. GB
//   SCREENSHOT_DIR  where loaded.png and final.png are written
// CHROMIUM (default /usr/bin/chromium) names the browser binary.
import { chromium } from "playwright-core";
import path from "node:path";

const [url, dimension, values, shots] = process.argv.slice(2);
if (!url || !dimension || !values || !shots) {
  console.error("usage: node drive_scorecard.mjs URL DIMENSION VALUES SCREENSHOT_DIR");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const out = { errors: [], console_errors: [], requests_outside: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  const origin = new URL(url).origin;
  page.on("pageerror", (err) => out.errors.push(String(err)));
  page.on("console", (msg) => { if (msg.type() === "error") out.console_errors.push(msg.text()); });
  page.on("request", (req) => {
    if (!req.url().startsWith(origin) && !req.url().startsWith("data:")) out.requests_outside.push(req.url());
  });

  const started = Date.now();
  const response = await page.goto(url, { waitUntil: "load" });
  out.status = response.status();
  out.title = await page.title();
  await page.waitForSelector(".js-plotly-plot .main-svg", { timeout: 30000 });
  out.load_ms = Date.now() - started;

  const snapshot = async () => page.evaluate(() => ({
    figures: document.querySelectorAll(".js-plotly-plot").length,
    figures_with_svg: Array.from(document.querySelectorAll(".js-plotly-plot"))
      .filter((el) => el.querySelector("svg.main-svg")).length,
    rows: document.querySelectorAll("#live-results tr.row[data-metric]").length,
    slices: Array.from(new Set(Array.from(document.querySelectorAll("#live-results tr.row[data-metric]"))
      .map((tr) => tr.dataset.slice))),
    state: document.getElementById("live-top").dataset.state,
    heading: document.querySelector("h1").textContent,
    live_text: document.getElementById("live-text").textContent,
    // the decision block: one call per treatment cell, above the headline estimates and the full table
    decision: Array.from(document.querySelectorAll("#decision .call")).map((el) => ({
      cell: el.dataset.cell, recommendation: el.dataset.recommendation,
      reasons: Array.from(el.querySelectorAll(".reasons li")).map((li) => li.textContent),
      visible: el.getBoundingClientRect().top < window.innerHeight,
    })),
    decision_first: (() => {
      const d = document.getElementById("decision"), h = document.getElementById("headlines"),
        t = document.getElementById("scorecard");
      return !!(d && h && t && d.getBoundingClientRect().top < h.getBoundingClientRect().top
        && h.getBoundingClientRect().top < t.getBoundingClientRect().top);
    })(),
    heatmap_drawn: !!document.querySelector("#figure-heatmap .main-svg"),
  }));
  out.loaded = await snapshot();
  await page.screenshot({ path: path.join(shots, "loaded.png") });

  // An unknown dimension: the API's 4xx message must appear inline, next to the form.
  await page.fill("input[name=dimension]", "no_such_dimension");
  await page.fill("input[name=values]", "x");
  await page.click("#slice-form button");
  await page.waitForSelector("#slice-message.alert:not(.ok):not(.warn)", { timeout: 15000 });
  out.error_message = await page.textContent("#slice-message");

  // A real live slice: submit, then wait until its rows are in the scorecard table.
  await page.fill("input[name=dimension]", dimension);
  await page.fill("input[name=values]", values);
  const t0 = Date.now();
  await page.click("#slice-form button");
  await page.waitForSelector("#slice-message.alert.ok", { timeout: 60000 });
  out.slice_ms = Date.now() - t0;
  out.slice_message = await page.textContent("#slice-message");
  await page.waitForFunction(() => document.getElementById("live-top").dataset.state !== "RUNNING",
    null, { timeout: 60000 });
  await page.waitForSelector(".js-plotly-plot .main-svg", { timeout: 30000 });
  out.final = await snapshot();
  out.new_rows = await page.evaluate(() => document.querySelectorAll("#live-results tr.row.new-slice").length);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: path.join(shots, "final.png") });
  await page.screenshot({ path: path.join(shots, "final_full.png"), fullPage: true });
} catch (err) {
  out.fatal = String(err && err.stack ? err.stack : err);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
