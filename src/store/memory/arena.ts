import { SegmentSource } from './segments';

/**
 * Append-only byte segments that hold the keyspace's keys and values. Bytes once written
 * are never overwritten: a changed value is appended elsewhere and the old range counted
 * dead, so a Buffer handed out over a range (a view's batch) stays valid for as long as
 * it is referenced. A segment whose every range died is dropped; sparse segments are
 * emptied by moving their live ranges out (see `Keyspace.compactStep`).
 *
 * A few hundred large buffers instead of one object per value: the garbage collector
 * sees one external allocation per segment, however many keys there are. Segments are
 * mappings from the project's addon where it is built, prefaulted ahead (segments.ts).
 */
export const SEGMENT_BYTES = 8 << 20;
/** Values larger than this get a segment of their own, so a segment is never mostly waste. */
const DEDICATED_FROM = SEGMENT_BYTES >>> 2;

export class Arena {
  private readonly source = new SegmentSource(SEGMENT_BYTES);
  private readonly segments: Array<Buffer | undefined> = [];
  /** Live bytes per segment. */
  private readonly live: number[] = [];
  private readonly freeSegments: number[] = [];
  private current = -1;
  private used = 0;
  private allocatedBytes = 0;
  private liveTotal = 0;

  /** Bytes of all segments held. */
  get allocated(): number {
    return this.allocatedBytes;
  }

  /** Bytes of all ranges still in use. */
  get liveBytes(): number {
    return this.liveTotal;
  }

  get segmentCount(): number {
    return this.segments.length - this.freeSegments.length;
  }

  /** The segment's bytes; ranges are addressed by (segment, offset). */
  segment(index: number): Buffer {
    return this.segments[index] as Buffer;
  }

  /**
   * Reserves `length` bytes; the caller writes them at `segment(seg)[off..]` before
   * anything else allocates.
   */
  allocate(bytes: number): { seg: number; off: number } {
    // An empty range still counts a byte, so that it keeps its segment alive.
    const length = Math.max(1, bytes);
    if (length > DEDICATED_FROM) {
      const seg = this.addSegment(this.source.take(length));
      this.live[seg] = length;
      this.liveTotal += length;
      return { seg, off: 0 };
    }
    if (this.current < 0 || this.used + length > SEGMENT_BYTES) {
      const previous = this.current;
      this.current = this.addSegment(this.source.take(SEGMENT_BYTES));
      this.used = 0;
      if (previous >= 0 && this.live[previous] === 0) this.dropSegment(previous);
    }
    const off = this.used;
    this.used += length;
    this.live[this.current] = (this.live[this.current] as number) + length;
    this.liveTotal += length;
    return { seg: this.current, off };
  }

  /** Marks a range dead; its segment goes when nothing in it lives. */
  release(seg: number, bytes: number): void {
    const length = Math.max(1, bytes);
    const left = (this.live[seg] as number) - length;
    this.live[seg] = left;
    this.liveTotal -= length;
    if (left === 0 && seg !== this.current) this.dropSegment(seg);
  }

  /** Live fraction of a segment (1 for the current one, which is still filling). */
  occupancy(seg: number): number {
    const buf = this.segments[seg];
    if (!buf || seg === this.current) return 1;
    return (this.live[seg] as number) / buf.length;
  }

  /** Segments (other than the current one) whose live fraction is below `threshold`. */
  sparseSegments(threshold: number, limit: number): number[] {
    const found: Array<[number, number]> = [];
    for (let seg = 0; seg < this.segments.length; seg++) {
      if (!this.segments[seg] || seg === this.current) continue;
      const occupancy = this.occupancy(seg);
      if (occupancy < threshold) found.push([occupancy, seg]);
    }
    found.sort((a, b) => a[0] - b[0]);
    return found.slice(0, limit).map(([, seg]) => seg);
  }

  /** Drops every segment (the store is closing). */
  clear(): void {
    this.source.clear();
    this.segments.length = 0;
    this.live.length = 0;
    this.freeSegments.length = 0;
    this.current = -1;
    this.used = 0;
    this.allocatedBytes = 0;
    this.liveTotal = 0;
  }

  private addSegment(buf: Buffer): number {
    const seg = this.freeSegments.pop() ?? this.segments.length;
    this.segments[seg] = buf;
    this.live[seg] = 0;
    this.allocatedBytes += buf.length;
    return seg;
  }

  private dropSegment(seg: number): void {
    const buf = this.segments[seg];
    if (!buf) return;
    this.allocatedBytes -= buf.length;
    this.segments[seg] = undefined;
    this.freeSegments.push(seg);
  }
}
