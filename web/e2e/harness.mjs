// What the browser tests share: a Fleety server of their own (the binary named by FLEETY_BIN,
// else the workspace's debug build) on a fresh data directory, a project whose allowed origin is
// a host page served here, and headless Chromium (Debian's, driven by playwright-core).

import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "../..");
export const ARTIFACTS = process.env.FLEETY_E2E_ARTIFACTS ?? join(ROOT, "target", "e2e");
const OPERATOR = "e2e-operator-token-0123456789";

function freePort() {
  return new Promise((done) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => done(port));
    });
  });
}

async function waitHealthy(base, child) {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) throw new Error(`fleety exited with ${child.exitCode}`);
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("fleety did not become healthy");
}

/** Starts a Fleety server; `stop()` ends it (SIGTERM), `kill()` ends it at once. */
export async function startServer({ dataDir, port, env = {} } = {}) {
  const bin = process.env.FLEETY_BIN ?? join(ROOT, "target", "debug", "fleety");
  port ??= await freePort();
  // A directory made here is the server's alone and goes when it stops: runs would otherwise
  // leave a store behind each time.
  const owned = dataDir === undefined;
  dataDir ??= mkdtempSync(join(tmpdir(), "fleety-e2e-"));
  const base = `http://127.0.0.1:${port}`;
  const child = spawn(bin, [], {
    env: {
      PATH: process.env.PATH,
      FLEETY_LISTEN: `127.0.0.1:${port}`,
      FLEETY_DATA_DIR: dataDir,
      FLEETY_OPERATOR_TOKEN: OPERATOR,
      FLEETY_LOG: "warn",
      ...env,
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  await waitHealthy(base, child);
  const exited = new Promise((done) => child.once("exit", done)).then(() => {
    if (owned) rmSync(dataDir, { recursive: true, force: true });
  });
  return {
    base,
    port,
    dataDir,
    async stop() {
      child.kill("SIGTERM");
      await exited;
    },
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/** Creates a project allowing `origins`, with a help-center article; its id and admin key. */
export async function createProject(base, origins, name = "Acme") {
  const r = await fetch(`${base}/v1/admin/projects`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${OPERATOR}` },
    body: JSON.stringify({ name, allowed_origins: origins }),
  });
  if (r.status !== 201) throw new Error(`project: ${r.status} ${await r.text()}`);
  const project = await r.json();
  const article = await fetch(`${base}/v1/projects/${project.project_id}/kb/articles`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${project.admin_key}` },
    body: JSON.stringify({
      title: "Refunds",
      body: "Refunds go back to the original payment method within five working days.",
      tags: ["billing"],
    }),
  });
  if (article.status !== 201) throw new Error(`article: ${article.status}`);
  return { id: project.project_id, key: project.admin_key };
}

/**
 * Serves a customer's page with the embed snippet, and CSS hostile to embedded widgets. The
 * page is on its own origin, as on a real site.
 */
export async function startHostPage(base, project, { port, locale } = {}) {
  const hostile = `
    * { all: unset !important; }
    html, body { display: block !important; font: 40px/1 "Comic Sans MS", cursive !important; color: red !important; }
    div, span, button, p { display: inline !important; border: 5px dashed lime !important; }
    body * { transform: rotate(1deg) !important; }
  `;
  const html = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Acme shop</title>
    <style>${hostile}</style></head><body>
    <main><h1>Acme shop</h1><p>Our products, with hostile global CSS.</p></main>
    <script>window.Fleety = window.Fleety || []; Fleety.push(['setTheme', {color: '#0b7285'}]);
      ${locale ? `Fleety.push(['setLocale', '${locale}']);` : ""}
      window.fleetyMessages = []; Fleety.push(['on', 'message', function (m) { window.fleetyMessages.push(m); }]);</script>
    <script src="${base}/widget.js" data-project="${project}" async></script>
    </body></html>`;
  const server = createServer((req, res) => {
    res.writeHead(200, { "Content-Type": "text/html; charset=utf-8" });
    res.end(html);
  });
  await new Promise((done) => server.listen(port ?? 0, "127.0.0.1", done));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return { origin, close: () => new Promise((done) => server.close(done)) };
}

/** A free port for a host page, known before the page exists (its origin must be allowed first). */
export { freePort };

export async function browser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Saves a screenshot as a test artefact. */
export async function shot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path });
  return path;
}

export function cleanup(dir) {
  rmSync(dir, { recursive: true, force: true });
}

export function writeArtifact(name, text) {
  mkdirSync(ARTIFACTS, { recursive: true });
  writeFileSync(join(ARTIFACTS, name), text);
}
