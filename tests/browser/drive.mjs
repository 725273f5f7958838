#!/usr/bin/env node
// Drives Astrid's page in headless Chromium over the DevTools protocol (a pipe; no npm
// packages): opens URL, optionally types a text into the text box and clicks "Explain",
// waits for window.astridResult, saves a screenshot, prints JSON on stdout:
//   {result, errorText, backendText, console, elapsedS}
// Usage: node drive.mjs --url URL [--text TEXT] [--click] [--evidence] [--screenshot out.png]
//                       [--timeout SEC] [--no-webgpu] [--chrome /usr/bin/chromium] [--visits N]
// --visits N opens the page N times in the same browser profile (a reload: caches kept) and
// reports the last visit.
// Without --no-webgpu, Chromium gets the flags that give WebGPU on SwiftShader (no GPU needed);
// with it, the page sees no WebGPU adapter and must fall back to its CPU backend.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const opt = { chrome: '/usr/bin/chromium', timeout: 300, screenshot: null, text: null, click: false, evidence: false, webgpu: true, url: null, visits: 1 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--url') opt.url = argv[++i];
  else if (a === '--text') opt.text = argv[++i];
  else if (a === '--click') opt.click = true;
  else if (a === '--evidence') opt.evidence = true;
  else if (a === '--screenshot') opt.screenshot = argv[++i];
  else if (a === '--timeout') opt.timeout = +argv[++i];
  else if (a === '--no-webgpu') opt.webgpu = false;
  else if (a === '--chrome') opt.chrome = argv[++i];
  else if (a === '--visits') opt.visits = +argv[++i];
  else { console.error(`drive.mjs: unknown argument ${a}`); process.exit(2); }
}
if (!opt.url) { console.error('drive.mjs: --url is required'); process.exit(2); }

const profile = mkdtempSync(join(tmpdir(), 'astrid-chromium-'));
const args = [
  '--headless', '--no-sandbox', '--no-first-run', '--no-default-browser-check',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic',
  '--disable-default-apps', '--disable-extensions', '--mute-audio',
  `--user-data-dir=${profile}`, '--window-size=1200,1500', '--remote-debugging-pipe',
  ...(opt.webgpu
    ? ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-angle=swiftshader', '--enable-unsafe-swiftshader']
    : ['--disable-gpu']),
  'about:blank',
];
const t0 = Date.now();
const proc = spawn(opt.chrome, args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe'] });
let stderrTail = '';
const keep = (d) => { stderrTail = (stderrTail + d.toString()).slice(-6000); };
proc.stdout.on('data', keep); proc.stderr.on('data', keep);
const toChrome = proc.stdio[3], fromChrome = proc.stdio[4];

let nextId = 1; const pending = new Map(); const consoleLines = [];
let buf = Buffer.alloc(0);
fromChrome.on('data', (chunk) => {
  buf = Buffer.concat([buf, chunk]);
  let z;
  while ((z = buf.indexOf(0)) >= 0) {
    const msg = JSON.parse(buf.subarray(0, z).toString('utf8')); buf = buf.subarray(z + 1);
    if (msg.id && pending.has(msg.id)) {
      const { res, rej } = pending.get(msg.id); pending.delete(msg.id);
      msg.error ? rej(new Error(JSON.stringify(msg.error))) : res(msg.result);
    } else if (msg.method === 'Runtime.consoleAPICalled') {
      consoleLines.push(`[${msg.params.type}] ` + msg.params.args.map(a => a.value ?? a.description ?? '').join(' '));
    } else if (msg.method === 'Runtime.exceptionThrown') {
      consoleLines.push('[exception] ' + (msg.params.exceptionDetails.exception?.description || msg.params.exceptionDetails.text));
    }
  }
});
let exited = false;
proc.on('exit', (code, sig) => { exited = true; for (const { rej } of pending.values()) rej(new Error(`chromium exited (${code ?? sig})`)); });
function send(method, params = {}, sessionId) {
  const id = nextId++;
  toChrome.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
  return new Promise((res, rej) => pending.set(id, { res, rej }));
}
const sleep = (ms) => new Promise(r => setTimeout(r, ms));
const deadline = Date.now() + opt.timeout * 1000;

let session;
async function evaluate(expression) {
  const r = await send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, session);
  if (r.exceptionDetails) throw new Error(`page evaluation failed: ${r.exceptionDetails.text}`);
  return r.result.value;
}
async function waitFor(expression, what) {
  while (Date.now() < deadline && !exited) {
    const v = await evaluate(expression);
    if (v) return v;
    await sleep(200);
  }
  throw new Error(`timed out after ${opt.timeout} s waiting for ${what}`);
}

let out = {}, code = 0;
try {
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  ({ sessionId: session } = await send('Target.attachToTarget', { targetId, flatten: true }));
  await send('Runtime.enable', {}, session);
  await send('Page.enable', {}, session);
  out.visitsMs = [];
  for (let visit = 0; visit < opt.visits; visit++) {
    const started = Date.now();
    // Through about:blank, so that nothing below reads the previous visit's page.
    await send('Page.navigate', { url: 'about:blank' }, session);
    await waitFor(`location.href === 'about:blank'`, 'about:blank');
    await send('Page.navigate', { url: opt.url }, session);
    await waitFor(`location.href !== 'about:blank' && document.readyState !== 'loading'`, 'the page');
    if (opt.text !== null || opt.click) {
      // The bundle is loaded when Explain is enabled (or an error/result is already there).
      await waitFor(`(() => { const b = document.querySelector('#explain'); return (b && !b.disabled) || window.astridResult !== undefined; })()`, 'the page to load its bundle');
    }
    if (opt.text !== null) {
      await evaluate(`(() => { const t = document.querySelector('#text'); t.focus(); t.select(); return true; })()`);
      await send('Input.insertText', { text: opt.text }, session);
    }
    if (opt.click) {
      const box = await evaluate(`(() => { const r = document.querySelector('#explain').getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()`);
      for (const type of ['mousePressed', 'mouseReleased']) {
        await send('Input.dispatchMouseEvent', { type, x: box.x, y: box.y, button: 'left', clickCount: 1 }, session);
      }
    }
    // While waiting, note the progress the page shows ("8/16 points").
    out.progressSeen = out.progressSeen || [];
    const result = await waitFor(`(() => {
      const p = document.querySelector('#status .steps + .muted');
      if (p) (window.__astridProgress = window.__astridProgress || []).push(p.textContent);
      return window.astridResult === undefined ? null : JSON.stringify(window.astridResult);
    })()`, 'window.astridResult');
    out.progressSeen.push(...((await evaluate(`window.__astridProgress || []`)) || []));
    out.visitsMs.push(Date.now() - started);
    if (visit + 1 < opt.visits) out.firstResult = JSON.parse(result);
    else out.lastResultJson = result;
  }
  let result = out.lastResultJson; delete out.lastResultJson;
  if (opt.evidence) {
    // "Remove the teacher's top tokens": wait until every model has its drop.
    await waitFor(`(() => { const b = document.querySelector('#remove-evidence'); return b && !b.disabled; })()`, 'the remove-evidence button');
    const box = await evaluate(`(() => { const r = document.querySelector('#remove-evidence').getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()`);
    for (const type of ['mousePressed', 'mouseReleased']) {
      await send('Input.dispatchMouseEvent', { type, x: box.x, y: box.y, button: 'left', clickCount: 1 }, session);
    }
    result = await waitFor(`(() => {
      const r = window.astridResult;
      return r && r.models && r.models.every(m => m.without_teacher_evidence) ? JSON.stringify(r) : null;
    })()`, 'each model\'s probability without the teacher\'s top tokens');
    out.evidenceText = await evaluate(`[...document.querySelectorAll('#results .evidence')].map(e => e.textContent)`);
  }
  await sleep(300); // let the last render land before the screenshot
  out.result = JSON.parse(result);
  out.errorText = await evaluate(`[...document.querySelectorAll('.error')].map(e => e.textContent).join('\\n') || null`);
  out.backendText = await evaluate(`document.querySelector('#backend')?.textContent ?? null`);
  out.typedText = await evaluate(`document.querySelector('#text')?.value ?? null`);
  out.notices = await evaluate(`[...document.querySelectorAll('.notice')].map(e => e.textContent)`);
  out.injected = await evaluate(`window.injected ?? null`);
  out.rows = await evaluate(`[...document.querySelectorAll('#results .row')].map(r => r.dataset.model)`);
  out.leaderboard = await evaluate(`[...document.querySelectorAll('#leaderboard tbody tr')].map(r => [...r.cells].map(c => c.textContent))`);
  if (opt.screenshot) {
    const s = await send('Page.captureScreenshot', { format: 'png' }, session);
    writeFileSync(opt.screenshot, Buffer.from(s.data, 'base64'));
  }
} catch (e) {
  out.driverError = String(e);
  out.chromiumStderrTail = stderrTail;
  code = 1;
} finally {
  out.console = consoleLines.slice(-40);
  out.elapsedS = +((Date.now() - t0) / 1000).toFixed(2);
  process.stdout.write(JSON.stringify(out) + '\n');
  try { if (!exited) await Promise.race([send('Browser.close'), sleep(3000)]); } catch {}
  await sleep(200);
  if (!exited) proc.kill('SIGKILL');
  rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}
