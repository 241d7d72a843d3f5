// The reference consumer: @atproto/sync's Firehose, verifying every commit, on a replayed stream.
//
//   node scripts/bench/firehose/ts-consumer.mjs REPLAY_URL EXPECTED_EVENTS
//
// REPLAY_URL is replay.mjs's http://127.0.0.1:PORT: the relay (its websocket) and the PLC
// directory at once. Options, as a production consumer of Herald's records would set them:
//   - unauthenticatedCommits stays false (the default): every commit's signature is checked
//     against the repo's #atproto key and every op proven in the MST (verifyProofs);
//   - filterCollections ['community.herald.*'], the records Herald indexes (commits touching
//     nothing else are dropped before any verification, as Herald does);
//   - an IdResolver with a MemoryCache (without one it would fetch the DID document again for
//     every commit) and the platform fetch (its default fetch refuses loopback and plain http);
//   - unauthenticatedHandles true: a handle check resolves the handle through DNS and
//     https://HANDLE/.well-known/atproto-did, which does not exist for the recorded .test
//     handles; Herald does not verify handles either.
// It counts the commit events (create / update / delete) handleEvent receives, from the
// moment the subscription starts until EXPECTED_EVENTS have arrived, then prints one JSON line
// to stdout: {events, seconds, eventsPerSecond, other, errors} and exits. An onError call is
// counted and the first one printed to stderr; a stream that stalls for 60 s ends the run
// with exit code 1.
import { load } from './deps.mjs';

const [url, expectedArg] = process.argv.slice(2);
const expected = Number(expectedArg);
if (!url || !(expected > 0)) {
  console.error('usage: ts-consumer.mjs REPLAY_URL EXPECTED_EVENTS');
  process.exit(2);
}

const { Firehose } = await load('@atproto/sync');
const { IdResolver, MemoryCache } = await load('@atproto/identity');

const idResolver = new IdResolver({ plcUrl: url, didCache: new MemoryCache(), fetch: globalThis.fetch });
let events = 0;
let errors = 0;
const other = {};
let started;
let lastProgress = Date.now();
let finish;
const done = new Promise((resolve) => (finish = resolve));

const firehose = new Firehose({
  idResolver,
  service: url.replace(/^http/, 'ws'),
  filterCollections: ['community.herald.*'],
  unauthenticatedHandles: true,
  handleEvent: async (evt) => {
    lastProgress = Date.now();
    if (evt.event === 'create' || evt.event === 'update' || evt.event === 'delete') {
      if (++events === expected) finish();
    } else {
      other[evt.event] = (other[evt.event] ?? 0) + 1;
    }
  },
  onError: (err) => {
    if (errors++ === 0) console.error('ts-consumer: first error:', err, err.cause ?? '');
  },
});

const stall = setInterval(() => {
  if (Date.now() - lastProgress > 60_000) {
    console.error(`ts-consumer: no event for 60 s after ${events} of ${expected}`);
    process.exit(1);
  }
}, 1000);

started = process.hrtime.bigint();
firehose.start();
await done;
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
clearInterval(stall);
process.stdout.write(
  JSON.stringify({ events, seconds, eventsPerSecond: events / seconds, other, errors }) + '\n',
);
process.exit(errors === 0 ? 0 : 1);
