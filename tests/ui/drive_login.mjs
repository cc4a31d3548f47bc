// Sign in to the scorecard page with an API key in Debian's chromium (playwright-core, no downloaded browser),
// request a live slice through the page's form, then play an attacker: a form on another origin posts a
// forged live slice to the API. Prints one JSON object; tests/ui/test_scorecard_login.py asserts on it.
//
// usage: node tests/ui/drive_login.mjs URL KEY DIMENSION VALUES FORGED_VALUE SCREENSHOT_DIR
//   URL           the page, http://127.0.0.1:PORT/analyses/ID/scorecard (auth on: it sends a browser to /login)
//   KEY           an accepted API key
//   DIMENSION     a declared dimension for the live slice, e.g. country; VALUES its value(s), e.g. GB
//   FORGED_VALUE  the value the forged requests ask for (they must not create that slice)
//   SCREENSHOT_DIR  where login.png and signed_in.png are written
import { chromium } from "playwright-core";
import path from "node:path";

const [url, key, dimension, values, forgedValue, shots] = process.argv.slice(2);
if (!url || !key || !dimension || !values || !forgedValue || !shots) {
  console.error("usage: node drive_login.mjs URL KEY DIMENSION VALUES FORGED_VALUE SCREENSHOT_DIR");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const out = { errors: [] };
const target = new URL(url);
const slicesUrl = url.replace(/\/scorecard$/, "/slices");

// An attacker's page: a form posted as soon as the page loads. ``slice``: a live slice as text/plain (a body
// that parses as JSON, the classic cross-site JSON request a browser sends without a preflight); ``logout``:
// a plain form post to /logout (a content type every form may send).
function attackerPage(kind) {
  if (kind === "logout") {
    return `<!DOCTYPE html><html><body><h1>You won a prize</h1>
<form id="f" method="POST" action="${target.origin}/logout"><input type="hidden" name="x" value="1"></form>
<script>document.getElementById("f").submit();</script></body></html>`;
  }
  // text/plain sends name=value: {"all_of":[...],"name":"forged=" + "}" is a valid slice request
  const name = JSON.stringify({ all_of: [{ column: dimension, values: [forgedValue] }], name: "forged" })
    .slice(0, -2);
  return `<!DOCTYPE html><html><body><h1>You won a prize</h1>
<form id="f" method="POST" action="${slicesUrl}" enctype="text/plain">
<input type="hidden" name='${name}' value='"}'></form>
<script>document.getElementById("f").submit();</script></body></html>`;
}

async function forge(context, origin, kind) {
  const page = await context.newPage();
  await page.route(`${origin}/prize.html`, (route) =>
    route.fulfill({ status: 200, contentType: "text/html", body: attackerPage(kind) }));
  const action = kind === "logout" ? `${target.origin}/logout` : slicesUrl;
  const answer = page.waitForResponse((r) => r.url() === action && r.request().method() === "POST",
    { timeout: 15000 });
  await page.goto(`${origin}/prize.html`);
  const response = await answer;
  const sent = await response.request().allHeaders();
  const result = {
    origin, kind, status: response.status(),
    body: (await response.text()).replace(/<(style|script)[^>]*>[\s\S]*?<\/\1>/g, "").slice(0, 4000),
    sent_session_cookie: (sent.cookie || "").includes("xpcompute_session="),
    sent_csrf_header: "x-csrf-token" in sent,
  };
  await page.close();
  return result;
}

try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (err) => out.errors.push(String(err)));

  // 1. The page without a session: the browser is sent to the sign-in form, which remembers where it was going.
  await page.goto(url, { waitUntil: "load" });
  out.redirected_to = page.url();
  out.login_form = await page.locator("#login-form input[type=password][name=key]").count();
  await page.screenshot({ path: path.join(shots, "login.png") });

  // 2. A wrong key: 401, the form again with the reason.
  await page.fill("#login-form input[name=key]", "not-the-key");
  const [wrong] = await Promise.all([page.waitForNavigation(), page.click("#login-form button")]);
  out.wrong_status = wrong.status();
  out.wrong_message = await page.textContent("#login-error");

  // 3. The right key: back on the scorecard, signed in.
  await page.fill("#login-form input[name=key]", key);
  await Promise.all([page.waitForURL(url), page.click("#login-form button")]);
  await page.waitForSelector(".js-plotly-plot .main-svg", { timeout: 30000 });
  out.after_login_url = page.url();
  out.state = await page.evaluate(() => document.getElementById("live-top").dataset.state);
  out.cookies = (await context.cookies()).map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite,
    secure: c.secure, expires: c.expires }));
  out.script_sees_session = await page.evaluate(() => document.cookie.includes("xpcompute_session"));
  out.script_sees_csrf = await page.evaluate(() => document.cookie.includes("xpcompute_csrf"));

  // 4. The page's live-slice form: its POST carries the CSRF token, and the slice's rows arrive.
  const posted = page.waitForRequest((r) => r.url() === slicesUrl && r.method() === "POST");
  await page.fill("input[name=dimension]", dimension);
  await page.fill("input[name=values]", values);
  await page.click("#slice-form button");
  out.form_sent_csrf = "x-csrf-token" in (await (await posted).allHeaders());
  await page.waitForSelector("#slice-message.alert.ok", { timeout: 60000 });
  out.slice_message = await page.textContent("#slice-message");
  out.new_rows = await page.evaluate(() => document.querySelectorAll("#live-results tr.row.new-slice").length);
  await page.screenshot({ path: path.join(shots, "signed_in.png") });

  // 5. Forged cross-origin posts, while the victim is signed in. From another port of the same host (same
  //    site: SameSite lets the cookie go, so the CSRF token is what refuses it) and from another site
  //    (SameSite=Strict keeps the cookie home, so the request arrives unauthenticated).
  out.forged_same_site = await forge(context, `http://${target.hostname}:9`, "slice");
  out.forged_cross_site = await forge(context, "http://localhost:9", "slice");
  out.forged_logout = await forge(context, `http://${target.hostname}:9`, "logout");
  out.cookies_after_forgeries = (await context.cookies()).map((c) => c.name);

  // 6. Sign out from the sign-in page: the scorecard sends the browser to sign in again.
  await page.goto(`${target.origin}/login`);
  out.signed_in_page = await page.locator("#logout-form").count();
  await Promise.all([page.waitForNavigation(), page.click("#logout-form button")]);
  out.cookies_after_logout = (await context.cookies()).map((c) => c.name);
  await page.goto(url);
  out.after_logout_url = page.url();
} catch (err) {
  out.fatal = String(err && err.stack ? err.stack : err);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
