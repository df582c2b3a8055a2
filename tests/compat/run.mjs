// The official clients against agpu: ollama-js 0.6.x and openai 6.x must not be able to tell an
// agpu node from Ollama.
//
// With AGPU_URL set, talks to that node (its Ollama must have llama3.2 and nomic-embed-text).
// Otherwise starts its own ollama-sim and `agpu serve` pair on free 127.0.0.1 ports, from
// AGPU_BIN / OLLAMA_SIM_BIN (default src/agpu and src/sim/ollama-sim under AGPU_BUILD_DIR, else
// the repository root), and stops both by PID at the end.
// Prints one line per check and ends with `N passed, N failed`; exits non-zero on any failure.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ollama } from 'ollama';
import OpenAI from 'openai';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const BUILD = process.env.AGPU_BUILD_DIR || REPO;
const AGPU_BIN = process.env.AGPU_BIN || path.join(BUILD, 'src', 'agpu');
const SIM_BIN = process.env.OLLAMA_SIM_BIN || path.join(BUILD, 'src', 'sim', 'ollama-sim');
const NODE_NAME = 'compat-node';
const CHECK_TIMEOUT_MS = 20000;
const TOTAL_TIMEOUT_MS = 120000;

const children = [];
let passed = 0;
let failed = 0;

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function accepts(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.setTimeout(200);
    s.on('connect', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
    s.on('timeout', () => { s.destroy(); resolve(false); });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function start(name, bin, args, port) {
  if (!fs.existsSync(bin)) throw new Error(`${name}: binary not found at ${bin}`);
  const logPath = path.join(os.tmpdir(), `agpu-compat-${name}-${process.pid}.log`);
  const log = fs.openSync(logPath, 'w');
  const env = Object.fromEntries(Object.entries(process.env)
    .filter(([k]) => !k.startsWith('AGPU_') && !k.startsWith('OLLAMA_')));
  const child = spawn(bin, args, { stdio: ['ignore', log, log], env });
  fs.closeSync(log);
  const rec = { name, child, logPath, exited: false };
  child.on('exit', () => { rec.exited = true; });
  children.push(rec);
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    if (rec.exited) throw new Error(`${name} exited early: ${fs.readFileSync(logPath, 'utf8').slice(-1500)}`);
    if (await accepts(port)) return rec;
    await sleep(20);
  }
  throw new Error(`${name} did not listen on ${port} within 10 s`);
}

async function stopAll() {
  for (const rec of children.reverse()) {
    if (rec.exited) continue;
    try { process.kill(rec.child.pid, 'SIGTERM'); } catch { continue; }
    const deadline = Date.now() + 3000;
    while (!rec.exited && Date.now() < deadline) await sleep(20);
    if (!rec.exited) {
      try { process.kill(rec.child.pid, 'SIGKILL'); } catch { /* gone */ }
      const d2 = Date.now() + 2000;
      while (!rec.exited && Date.now() < d2) await sleep(20);
    }
  }
}

function killAllNow() {
  for (const rec of children) {
    if (!rec.exited) { try { process.kill(rec.child.pid, 'SIGKILL'); } catch { /* gone */ } }
  }
}
process.on('exit', killAllNow);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { killAllNow(); process.exit(130); });
}

async function check(name, fn) {
  let timer;
  try {
    await Promise.race([
      fn(),
      new Promise((_, rej) => { timer = setTimeout(() => rej(new Error(`timed out after ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS); }),
    ]);
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${(e && (e.stack || e.message)) || e}`.split('\n').slice(0, 3).join(' | '));
  } finally {
    clearTimeout(timer);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function expectThrow(fn, verify) {
  let err = null;
  try { await fn(); } catch (e) { err = e; }
  assert(err, 'expected an error, got success');
  verify(err);
}

async function main() {
  let url = process.env.AGPU_URL;
  if (!url) {
    const simPort = await freePort();
    await start('ollama-sim', SIM_BIN, ['--listen', `127.0.0.1:${simPort}`, '--tokens-per-sec', '2000',
      '--load-ms', '5', '--pull-ms', '50', '--parallel', '4'], simPort);
    const port = await freePort();
    const gossip = await freePort();
    await start('agpu', AGPU_BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--ollama', `http://127.0.0.1:${simPort}`,
      '--gossip', `127.0.0.1:${gossip}`, '--no-mdns', '--name', NODE_NAME], port);
    url = `http://127.0.0.1:${port}`;
  }
  console.log(`# agpu node at ${url}`);
  const ollama = new Ollama({ host: url });
  const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'ollama', maxRetries: 0, timeout: CHECK_TIMEOUT_MS });
  const M = 'llama3.2';
  const opts = { seed: 42, num_predict: 12 };

  await check('ollama.list', async () => {
    const r = await ollama.list();
    const names = r.models.map((m) => m.name);
    assert(names.includes('llama3.2:latest'), `models: ${names}`);
    assert(r.models.every((m) => m.digest && m.details), 'a model lacks digest or details');
  });

  await check('ollama.show', async () => {
    const r = await ollama.show({ model: M });
    assert(r.details && typeof r.modelfile === 'string', `show: ${JSON.stringify(r).slice(0, 200)}`);
  });

  let generated = '';
  await check('ollama.generate (not streamed)', async () => {
    const r = await ollama.generate({ model: M, prompt: 'Why is the sky blue?', options: opts });
    assert(r.done === true && r.response.length > 0, `generate: ${JSON.stringify(r).slice(0, 200)}`);
    assert(r.model === M, `model echoed as ${r.model}`);
    generated = r.response;
  });

  await check('ollama.generate (streamed)', async () => {
    const stream = await ollama.generate({ model: M, prompt: 'Why is the sky blue?', options: opts, stream: true });
    let text = '';
    let parts = 0;
    let last = null;
    for await (const part of stream) { text += part.response; parts++; last = part; }
    assert(parts >= 2, `only ${parts} parts`);
    assert(last && last.done === true && last.done_reason, 'no final done part');
    assert(text === generated, `streamed text ${JSON.stringify(text)} != unstreamed ${JSON.stringify(generated)}`);
  });

  await check('ollama.ps', async () => {
    const r = await ollama.ps();
    assert(Array.isArray(r.models), 'ps: no models array');
    assert(r.models.some((m) => m.name.startsWith('llama3.2')), `ps: ${r.models.map((m) => m.name)}`);
  });

  let chatted = '';
  await check('ollama.chat (not streamed)', async () => {
    const r = await ollama.chat({ model: M, messages: [{ role: 'user', content: 'Hello!' }], options: opts });
    assert(r.done === true && r.message.role === 'assistant' && r.message.content.length > 0,
      `chat: ${JSON.stringify(r).slice(0, 200)}`);
    chatted = r.message.content;
  });

  await check('ollama.chat (streamed)', async () => {
    const stream = await ollama.chat({ model: M, messages: [{ role: 'user', content: 'Hello!' }], options: opts, stream: true });
    let text = '';
    let last = null;
    for await (const part of stream) { text += part.message.content; last = part; }
    assert(last && last.done === true, 'no final done part');
    assert(text === chatted, `streamed ${JSON.stringify(text)} != unstreamed ${JSON.stringify(chatted)}`);
  });

  await check('ollama.embed', async () => {
    const r = await ollama.embed({ model: 'nomic-embed-text', input: ['hello', 'world'] });
    assert(r.embeddings.length === 2 && r.embeddings[0].length > 0, `embed: ${r.embeddings.length} vectors`);
    assert(r.embeddings[0].every((x) => typeof x === 'number'), 'non-numeric embedding');
  });

  await check('ollama.pull (streamed progress ends in success)', async () => {
    const stream = await ollama.pull({ model: 'tinyllama', stream: true });
    const statuses = [];
    for await (const part of stream) statuses.push(part.status);
    assert(statuses.length >= 2, `only ${statuses.length} progress lines`);
    assert(statuses[statuses.length - 1] === 'success', `last status ${statuses[statuses.length - 1]}`);
  });

  await check('ollama.list shows the pulled model', async () => {
    const r = await ollama.list();
    assert(r.models.some((m) => m.name === 'tinyllama:latest'), `models: ${r.models.map((m) => m.name)}`);
  });

  await check('ollama.generate unknown model -> ResponseError 404', async () => {
    await expectThrow(() => ollama.generate({ model: 'no-such-model', prompt: 'x' }), (e) => {
      assert(e.name === 'ResponseError', `error type ${e.name}: ${e.message}`);
      assert(e.status_code === 404, `status ${e.status_code}`);
      assert(/not found/.test(e.message), `message ${e.message}`);
    });
  });

  await check('ollama.chat streamed unknown model -> ResponseError 404', async () => {
    await expectThrow(async () => {
      const s = await ollama.chat({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }], stream: true });
      for await (const _ of s) { /* drain */ }
    }, (e) => {
      assert(e.status_code === 404 && /not found/.test(e.message), `${e.name} ${e.status_code} ${e.message}`);
    });
  });

  let oaText = '';
  await check('openai chat.completions (not streamed)', async () => {
    const { data, response } = await openai.chat.completions.create({
      model: M, messages: [{ role: 'user', content: 'Hello!' }], seed: 42, max_tokens: 12,
    }).withResponse();
    assert(data.object === 'chat.completion', `object ${data.object}`);
    const c = data.choices[0];
    assert(c.message.role === 'assistant' && c.message.content.length > 0 && c.finish_reason,
      `choice ${JSON.stringify(c)}`);
    assert(response.headers.get('x-agpu-node'), 'no X-Agpu-Node header');
    oaText = c.message.content;
  });

  await check('openai chat.completions (streamed)', async () => {
    const stream = await openai.chat.completions.create({
      model: M, messages: [{ role: 'user', content: 'Hello!' }], seed: 42, max_tokens: 12, stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let finish = null;
    let usage = null;
    let chunks = 0;
    for await (const chunk of stream) {
      chunks++;
      if (chunk.usage) usage = chunk.usage;
      for (const ch of chunk.choices) {
        text += ch.delta?.content || '';
        if (ch.finish_reason) finish = ch.finish_reason;
      }
    }
    assert(chunks >= 2, `${chunks} chunks`);
    assert(finish, 'no finish_reason');
    assert(usage && usage.completion_tokens > 0, `usage ${JSON.stringify(usage)}`);
    assert(text === oaText, `streamed ${JSON.stringify(text)} != unstreamed ${JSON.stringify(oaText)}`);
  });

  await check('openai models.list', async () => {
    const ids = [];
    for await (const m of openai.models.list()) ids.push(m.id);
    assert(ids.includes('llama3.2:latest'), `ids: ${ids}`);
  });

  await check('openai models.retrieve', async () => {
    const m = await openai.models.retrieve('llama3.2:latest');
    assert(m.id === 'llama3.2:latest' && m.object === 'model', JSON.stringify(m));
  });

  await check('openai embeddings', async () => {
    const r = await openai.embeddings.create({ model: 'nomic-embed-text', input: ['hello', 'world'] });
    assert(r.data.length === 2 && r.data[0].embedding.length > 0, `${r.data.length} embeddings`);
  });

  await check('openai chat unknown model -> NotFoundError 404', async () => {
    await expectThrow(() => openai.chat.completions.create({
      model: 'no-such-model', messages: [{ role: 'user', content: 'x' }],
    }), (e) => {
      assert(e instanceof OpenAI.APIError, `error type ${e.constructor.name}: ${e.message}`);
      assert(e.status === 404, `status ${e.status}`);
      assert(/not found/.test(e.message), `message ${e.message}`);
    });
  });

  await check('openai streamed chat unknown model -> NotFoundError 404', async () => {
    await expectThrow(async () => {
      const s = await openai.chat.completions.create({
        model: 'no-such-model', messages: [{ role: 'user', content: 'x' }], stream: true,
      });
      for await (const _ of s) { /* drain */ }
    }, (e) => {
      assert(e instanceof OpenAI.APIError && e.status === 404, `${e.constructor.name} ${e.status} ${e.message}`);
    });
  });
}

const watchdog = setTimeout(() => {
  console.log(`FAIL compat run: exceeded ${TOTAL_TIMEOUT_MS} ms`);
  failed++;
  console.log(`${passed} passed, ${failed} failed`);
  killAllNow();
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

let code = 0;
try {
  await main();
} catch (e) {
  failed++;
  console.log(`FAIL setup: ${e.message}`);
} finally {
  await stopAll();
  for (const rec of children) {
    if (failed && rec.logPath) console.log(`# ${rec.name} log: ${rec.logPath}`);
    else { try { fs.unlinkSync(rec.logPath); } catch { /* none */ } }
  }
  clearTimeout(watchdog);
  console.log(`${passed} passed, ${failed} failed`);
  code = failed ? 1 : 0;
}
process.exit(code);
