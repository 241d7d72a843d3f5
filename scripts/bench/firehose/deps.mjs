// Loads packages from scripts/atproto/node_modules (installed by scripts/atproto-deps), which
// Node's own resolution would not look in from here.
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const atproto = fileURLToPath(new URL('../../atproto/package.json', import.meta.url));
const require = createRequire(atproto);

export async function load(name) {
  let resolved;
  try {
    resolved = require.resolve(name);
  } catch (err) {
    console.error(`${name} is not installed under scripts/atproto: run scripts/atproto-deps first`);
    throw err;
  }
  const mod = await import(pathToFileURL(resolved).href);
  // CommonJS packages (ws) come back as { default: module.exports }.
  return mod.default && Object.keys(mod).length === 1 ? mod.default : mod;
}

// Reads a recording: u32 big-endian length + frame bytes, repeated.
export function readFrames(buf) {
  const frames = [];
  let at = 0;
  while (at < buf.length) {
    if (at + 4 > buf.length) throw new Error(`truncated length at byte ${at}`);
    const len = buf.readUInt32BE(at);
    at += 4;
    if (at + len > buf.length) throw new Error(`truncated frame at byte ${at}`);
    frames.push(buf.subarray(at, at + len));
    at += len;
  }
  return frames;
}

export function frameRecord(frame) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(frame.length);
  return [len, frame];
}
