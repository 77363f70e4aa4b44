// Drives meshd's status page in Debian's headless Chromium (playwright-core, no browser
// download): the page loads, shows live data from a running meshd, updates when more relays
// are served, and logs no console error. Leaves a screenshot.
//
// Usage: node check.mjs <status-url> <mesh-token> <screenshot.png>
// Protocol with the caller (tests/status_page.rs), one line each way:
//   → "READY served=<n>"   the page shows n relays served
//   ← "EXPECT <m>"         the caller served more relays; wait for the page to show m
//   → "SHOT"               after the screenshot of that state
//   ← "STATE <ok|degraded|down> <png> <text>[|<text>…]"
//                          the caller brought meshd into a state: wait until the header badge
//                          and the state box show it and the page shows every <text>, then
//                          save a screenshot to <png> (a stopped servicer counts as down once
//                          its last good check is stale: up to 30 s with these settings)
//   → "SHOT"
//   ← "DONE"
//   → "OK"                 then exit 0 (any failure: a message on stderr and exit 1)
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";

const [url, token, screenshot] = process.argv.slice(2);
if (!url || !token || !screenshot) {
  console.error("usage: node check.mjs <status-url> <mesh-token> <screenshot.png>");
  process.exit(2);
}
const TIMEOUT = 15000;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

function fail(message) {
  throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  // Flags for this machine's closed network (machines/rust.md); Playwright gives every launch
  // a fresh, empty profile directory.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
let code = 0;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.url()}`); });

  await page.goto(`${url}#token=${encodeURIComponent(token)}`, { waitUntil: "load", timeout: TIMEOUT });
  await page.waitForSelector("#main:not([hidden])", { timeout: TIMEOUT });
  if (page.url().includes("token")) fail(`the token stays in the address bar: ${page.url()}`);
  await page.waitForFunction(() => document.querySelector("#conn")?.textContent === "live", null, { timeout: TIMEOUT });
  if (await page.isVisible("#login")) fail("the token form is still shown next to the data");

  const served = Number(await page.textContent("#c-served"));
  if (!(served > 0)) fail(`served count is ${served}`);
  const nodes = await page.$$eval("#nodes tr", (rows) => rows.map((r) => r.innerText));
  if (nodes.length !== 1 || !nodes[0].includes("healthy") || !nodes[0].includes("101")) fail(`node rows: ${JSON.stringify(nodes)}`);
  const addresses = await page.$$eval("#addresses tr", (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  if (addresses.length !== 1 || addresses[0][3] !== String(served)) fail(`address rows: ${JSON.stringify(addresses)} (served ${served})`);
  const states = await page.$$eval("#states tr", (rows) => rows.map((r) => r.innerText));
  if (!states.some((s) => s.includes("SESSION_ACTIVE")) || !states.some((s) => s.includes("SERVICER_HEALTHY"))) {
    fail(`state rows: ${JSON.stringify(states)}`);
  }
  const pending = await page.textContent("#q-pending");
  if (!/^\d+$/.test(pending)) fail(`queue depth shows ${pending}`);

  // Live: the caller serves more relays; the page must show them without a reload.
  console.log(`READY served=${served}`);
  const next = await lines.next();
  const m = /^EXPECT (\d+)$/.exec(next.value ?? "");
  if (!m) fail(`expected "EXPECT <n>" from the caller, got ${JSON.stringify(next.value)}`);
  await page.waitForFunction((want) => document.querySelector("#c-served")?.textContent === want, m[1], { timeout: TIMEOUT });
  await page.waitForFunction((want) => [...document.querySelectorAll("#addresses tr td")][3]?.textContent === want, m[1], { timeout: TIMEOUT });

  await page.waitForFunction(() => document.querySelector("#overall")?.textContent === "ok", null, { timeout: TIMEOUT });
  const rate = await page.textContent("#r-rate");
  if (!(Number(rate) > 0)) fail(`relays/s shows ${rate}`);
  if (!/ms \/ .* ms$/.test(await page.textContent("#r-latency"))) fail(`latency shows ${await page.textContent("#r-latency")}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  if (problems.length) fail(`the page reported problems:\n${problems.join("\n")}`);
  console.log("SHOT");

  // The states the caller drives meshd into, each checked on the page and photographed.
  for (;;) {
    const cmd = (await lines.next()).value ?? "";
    if (cmd === "DONE") break;
    const s = /^STATE (ok|degraded|down) (\S+) (.+)$/.exec(cmd);
    if (!s) fail(`expected "STATE …" or "DONE", got ${JSON.stringify(cmd)}`);
    const [, state, png, texts] = s;
    try {
      await page.waitForFunction(
        ([want, needles]) => {
          const text = document.querySelector("#main")?.innerText ?? "";
          return document.querySelector("#overall")?.textContent === want &&
            document.querySelector("#state-text")?.textContent === want &&
            needles.every((n) => text.includes(n));
        },
        [state, texts.split("|")],
        { timeout: 60000 },
      );
    } catch (e) {
      const shown = await page.textContent("#overall");
      const reasons = await page.$$eval("#reasons li", (items) => items.map((i) => i.textContent));
      fail(`state ${state} with ${texts} not shown (badge ${shown}, reasons ${JSON.stringify(reasons)}): ${e.message}`);
    }
    const cls = await page.getAttribute("#overall", "class");
    const want = { ok: "ok", degraded: "warn", down: "bad" }[state];
    if (!cls.split(" ").includes(want)) fail(`badge class ${cls} for ${state}`);
    await page.screenshot({ path: png, fullPage: true });
    console.log("SHOT");
  }
  if (problems.length) fail(`the page reported problems:\n${problems.join("\n")}`);

  // A second tab without the token asks for it and shows no data; a wrong token is refused.
  const login = await context.newPage();
  await context.clearCookies();
  await login.goto(url, { waitUntil: "load", timeout: TIMEOUT });
  await login.evaluate(() => sessionStorage.clear());
  await login.reload({ waitUntil: "load" });
  await login.waitForSelector("#login:not([hidden])", { timeout: TIMEOUT });
  if (await login.isVisible("#main")) fail("data is visible without a token");
  await login.fill("#token", "not-the-token");
  await login.click("button[type=submit]");
  await login.waitForFunction(() => document.querySelector("#conn")?.textContent === "wrong token", null, { timeout: TIMEOUT });
  console.log("OK");
} catch (e) {
  console.error(`status page check failed: ${e.message}`);
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
