// Replays a recorded firehose (record.mjs's output) to any number of consumers, on loopback.
//
//   node scripts/bench/firehose/replay.mjs [DIR] [--port N]
//
// One HTTP server on 127.0.0.1 (port N, default a free one) that
//   - answers GET /{did} with the recorded DID document: a PLC directory for the recorded
//     accounts (404 for any other DID);
//   - on every websocket connection to /xrpc/com.atproto.sync.subscribeRepos sends all the
//     recorded frames, in order, as fast as the client reads them (at most WINDOW frames
//     handed to the socket and not yet written out), whatever cursor was asked for. The socket
//     then stays open and idle, as a caught-up relay's would, until the client closes it.
// When listening it prints one JSON line to stdout, {"url":"http://127.0.0.1:PORT","frames":N},
// and logs each connection's totals to stderr. Stops on SIGTERM or SIGINT.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { load, readFrames } from './deps.mjs';

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: { port: { type: 'string', default: '0' } },
});
const dir = path.resolve(positionals[0] ?? 'target/firehose-bench');
const frames = readFrames(fs.readFileSync(path.join(dir, 'frames.bin')));
const dids = JSON.parse(fs.readFileSync(path.join(dir, 'dids.json'), 'utf8'));
const { WebSocketServer } = await load('ws');

const WINDOW = 64;
const SUBSCRIBE = '/xrpc/com.atproto.sync.subscribeRepos';
const log = (...m) => console.error('replay:', ...m);

let documentsServed = 0;
const server = http.createServer((req, res) => {
  documentsServed++;
  const did = decodeURIComponent(new URL(req.url, 'http://x').pathname.slice(1));
  const doc = req.method === 'GET' ? dids[did] : undefined;
  if (!doc) {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ message: 'DID not registered' }));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/did+ld+json' });
  res.end(JSON.stringify(doc));
});

const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
server.on('upgrade', (req, socket, head) => {
  if (new URL(req.url, 'http://x').pathname !== SUBSCRIBE) {
    socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => stream(ws));
});

let connections = 0;
function stream(ws) {
  const id = ++connections;
  const started = process.hrtime.bigint();
  let next = 0;
  let inFlight = 0;
  let closed = false;
  ws.on('close', () => {
    closed = true;
    log(`connection ${id} closed after ${next} frames; ${documentsServed} DID document requests so far`);
  });
  ws.on('error', () => {});
  const pump = () => {
    while (!closed && inFlight < WINDOW && next < frames.length) {
      inFlight++;
      ws.send(frames[next++], { binary: true }, (err) => {
        inFlight--;
        if (err) return;
        if (next < frames.length) pump();
        else if (inFlight === 0) {
          const s = Number(process.hrtime.bigint() - started) / 1e9;
          log(`connection ${id}: ${frames.length} frames written in ${s.toFixed(2)} s`);
        }
      });
    }
  };
  log(`connection ${id} opened`);
  pump();
}

server.listen(Number(args.port), '127.0.0.1', () => {
  const { port } = server.address();
  process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${port}`, frames: frames.length }) + '\n');
  log(`${frames.length} frames and ${Object.keys(dids).length} DID documents from ${dir}`);
});

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
