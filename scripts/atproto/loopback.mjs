// What every script that starts @atproto/dev-env's network needs before importing it.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

// The PDS and PLC servers call listen(port) with no host, which binds every interface; keep
// them on loopback. (Their URLs say `localhost`, which /etc/hosts maps to 127.0.0.1.)
export function keepOnLoopback() {
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
}

// dev-env keeps the PDS's SQLite files and blobs under os.tmpdir(): give it a folder of our
// own. Returns the folder and a function that removes it.
export function privateTmpdir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.env.TMPDIR = dir;
  return { dir, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
