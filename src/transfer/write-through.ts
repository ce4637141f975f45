import { writeSync, writevSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/** Bytes gathered before one write: fewer system calls for small pieces. */
const BATCH_BYTES = 256 << 10;
/** Larger single writes measured slower here (see docs/design/transfer.md). */
const MAX_WRITE = 256 << 10;

/**
 * Writes contiguous pieces to `file` on the calling thread, gathered into one `writev`
 * per 256 KiB. Measured on the fetch path, synchronous writes of verified pieces into
 * the page cache cost less CPU and time than handing each to the thread pool, and the
 * file stays the gapless prefix that was written (what a later run resumes from).
 */
export class WriteThrough {
  private pieces: Buffer[] = [];
  private releases: Array<() => void> = [];
  private bytes = 0;
  private start: number;

  /** `start`: where the file's verified prefix (or a range's region) ends so far. */
  constructor(
    private readonly file: FileHandle,
    start = 0,
  ) {
    this.start = start;
  }

  /** Offset up to which everything given is on the file. */
  get written(): number {
    return this.start;
  }

  /** `release` is called once `data` is on the file. */
  add(offset: number, data: Buffer, release?: () => void): void {
    if (this.bytes === 0) this.start = offset;
    else if (offset !== this.start + this.bytes) {
      this.flush();
      this.start = offset;
    }
    this.pieces.push(data);
    if (release) this.releases.push(release);
    this.bytes += data.length;
    if (this.bytes >= BATCH_BYTES) this.flush();
  }

  /** Writes what is gathered. */
  flush(): void {
    let pieces = this.pieces;
    let position = this.start;
    while (pieces.length > 0) {
      const written =
        pieces.length === 1
          ? writeSync(
              this.file.fd,
              pieces[0] as Buffer,
              0,
              Math.min(MAX_WRITE, (pieces[0] as Buffer).length),
              position,
            )
          : writevSync(this.file.fd, pieces, position);
      position += written;
      pieces = dropBytes(pieces, written);
    }
    this.start = position;
    this.pieces = [];
    this.bytes = 0;
    const releases = this.releases;
    this.releases = [];
    for (const release of releases) release();
  }
}

/** `pieces` without their first `count` bytes (after a short write). */
function dropBytes(pieces: Buffer[], count: number): Buffer[] {
  let left = count;
  let i = 0;
  while (i < pieces.length && left >= (pieces[i] as Buffer).length)
    left -= (pieces[i++] as Buffer).length;
  const rest = pieces.slice(i);
  if (left > 0 && rest.length > 0) rest[0] = (rest[0] as Buffer).subarray(left);
  return rest;
}
