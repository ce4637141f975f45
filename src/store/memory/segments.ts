import * as fs from 'node:fs';
import * as path from 'node:path';

// Typed surface over the shardsnap_segments addon (native/src/segments.cc): memory for the
// arena. The only module that loads it.

interface SegmentsBinding {
  /** A Buffer of `bytes` over an anonymous mapping, unmapped when collected. */
  allocateSegment(bytes: number): Buffer;
  /** Touches every page of `buffer` on the threadpool; the buffer is unused until it settles. */
  prefaultSegment(buffer: Buffer): Promise<void>;
}

const ADDON_RELATIVE = path.join('native', 'build', 'Release', 'shardsnap_segments.node');
// Sources run from src/store/memory, compiled output from dist/src/store/memory.
// SHARDSNAP_ADDON_DIR: another build of the addons (see the RocksDB binding).
const ADDON_CANDIDATES = [
  ...(process.env.SHARDSNAP_ADDON_DIR
    ? [path.join(process.env.SHARDSNAP_ADDON_DIR, 'shardsnap_segments.node')]
    : []),
  path.join(__dirname, '../../..', ADDON_RELATIVE),
  path.join(__dirname, '../../../..', ADDON_RELATIVE),
];

let binding: SegmentsBinding | null | undefined;

/** The addon, or null where it is not built (the arena then uses ordinary Buffers). */
function addon(): SegmentsBinding | null {
  if (binding !== undefined) return binding;
  const file = ADDON_CANDIDATES.find((candidate) => fs.existsSync(candidate));
  if (file === undefined) {
    binding = null;
    return binding;
  }
  const loaded: { exports: unknown } = { exports: {} };
  process.dlopen(loaded, file);
  binding = loaded.exports as SegmentsBinding;
  return binding;
}

/** Whether segments come from the addon's mappings (the addon is built). */
export function nativeSegments(): boolean {
  return addon() !== null;
}

/**
 * Supplies arena segments. A store that keeps growing pays the first touch of every new
 * page, which on virtual machines costs far more than the copy that follows (measured:
 * 288 MiB in 1.7 s first, 12 ms again). So once a store needs a second segment, one
 * spare is kept ready: allocated, and its pages touched on the threadpool while the
 * event loop fills the current one.
 */
export class SegmentSource {
  private spare: { buffer: Buffer; ready: boolean } | undefined;
  private taken = 0;

  constructor(private readonly segmentBytes: number) {}

  /** A segment of `bytes` (a prepared spare when one is ready and the size fits). */
  take(bytes: number): Buffer {
    this.taken++;
    const spare = this.spare;
    let out: Buffer;
    if (bytes === this.segmentBytes && spare?.ready) {
      this.spare = undefined;
      out = spare.buffer;
    } else {
      out = allocate(bytes);
    }
    if (bytes === this.segmentBytes && this.taken > 1 && !this.spare) this.prepareSpare();
    return out;
  }

  /** Drops the spare (the store is closing). */
  clear(): void {
    this.spare = undefined;
    this.taken = 0;
  }

  private prepareSpare(): void {
    const native = addon();
    if (!native) return;
    const spare = { buffer: native.allocateSegment(this.segmentBytes), ready: false };
    this.spare = spare;
    native.prefaultSegment(spare.buffer).then(
      () => {
        spare.ready = true;
      },
      () => {
        // Not prefaulted: still a usable segment, touched by its first writes instead.
        spare.ready = true;
      },
    );
  }
}

function allocate(bytes: number): Buffer {
  const native = addon();
  return native ? native.allocateSegment(Math.max(1, bytes)) : Buffer.allocUnsafeSlow(bytes);
}
