// Click the first segment's "Compute as live slice" button on the served scorecard page (Debian's chromium via
// playwright-core) and print what the reader sees as one JSON object; tests/segments/test_segment_button.py asserts.
// usage: node tests/segments/click_segment.mjs URL
import { chromium } from "playwright-core";

const [url] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const out = { errors: [], posts: [] };
try {
  const page = await browser.newPage();
  page.on("pageerror", (err) => out.errors.push(String(err)));
  page.on("request", (req) => {
    if (req.method() === "POST") out.posts.push({ url: req.url(), body: req.postData() });
  });
  await page.goto(url, { waitUntil: "load" });
  out.buttons = await page.locator("#segments button[data-slice-body]").count();
  const first = page.locator("#segments button[data-slice-body]").first();
  out.body = await first.getAttribute("data-slice-body");
  await first.click();
  await page.waitForFunction(() => /is in the scorecard/.test(document.getElementById("slice-message").textContent),
    null, { timeout: 120000 });
  out.message = await page.locator("#slice-message").textContent();
} catch (err) {
  out.fatal = String(err);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
