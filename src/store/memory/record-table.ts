/**
 * The keyspace's records, addressed by record id: where the key and value bytes are in
 * the arena, the key's hash and slot, the value's type and expiry, and bookkeeping flags.
 * Ids of freed records are reused.
 *
 * One record is 40 bytes in one shared ArrayBuffer (no object on the V8 heap), laid out
 * together so that reaching a record costs one or two cache lines and one page: with a
 * column per field, a walk in slot order touched a page per field per record, which made
 * a 10M-key node several times slower to snapshot than a 1M-key one.
 *
 *   u32 seg | u32 off | u32 keyLen | u32 valLen | u32 hash | u32 slot:16 type:8 flags:8 |
 *   u32 pins | u32 (unused) | f64 expire
 */
export const FLAG_INDEXED = 1;
/** The value is a JS object in `objects` (a large collection), not bytes in the arena. */
export const FLAG_OBJECT = 2;
/** Out of the index but pinned by a view: freed when the last pin goes. */
export const FLAG_RETIRED = 4;

const STRIDE = 10;
const INITIAL_CAPACITY = 1024;

export class RecordTable {
  private words = new Uint32Array(INITIAL_CAPACITY * STRIDE);
  private floats = new Float64Array(this.words.buffer);
  private capacity = INITIAL_CAPACITY;
  /** Ids in use or freed: the high-water mark. */
  private top = 0;
  private readonly freeIds: number[] = [];

  /** One past the highest id ever handed out (ids below it may be free). */
  get limit(): number {
    return this.top;
  }

  get inUse(): number {
    return this.top - this.freeIds.length;
  }

  seg(id: number): number {
    return this.words[id * STRIDE] as number;
  }
  off(id: number): number {
    return this.words[id * STRIDE + 1] as number;
  }
  keyLen(id: number): number {
    return this.words[id * STRIDE + 2] as number;
  }
  valLen(id: number): number {
    return this.words[id * STRIDE + 3] as number;
  }
  hash(id: number): number {
    return this.words[id * STRIDE + 4] as number;
  }
  slot(id: number): number {
    return (this.words[id * STRIDE + 5] as number) & 0xffff;
  }
  /** VALUE_TYPE_CODES of the value; 0 = a free id. */
  type(id: number): number {
    return ((this.words[id * STRIDE + 5] as number) >>> 16) & 0xff;
  }
  flags(id: number): number {
    return (this.words[id * STRIDE + 5] as number) >>> 24;
  }
  /** Views that still need the record as it is. */
  pins(id: number): number {
    return this.words[id * STRIDE + 6] as number;
  }
  /** Absolute expiry in Unix ms; 0 = none. */
  expire(id: number): number {
    return this.floats[id * (STRIDE / 2) + 4] as number;
  }

  /** Fills a record's fields at once (flags and pins start at 0). */
  set(
    id: number,
    seg: number,
    off: number,
    keyLen: number,
    valLen: number,
    hash: number,
    slot: number,
    type: number,
    expire: number,
  ): void {
    const w = this.words;
    const at = id * STRIDE;
    w[at] = seg;
    w[at + 1] = off;
    w[at + 2] = keyLen;
    w[at + 3] = valLen;
    w[at + 4] = hash;
    w[at + 5] = slot | (type << 16);
    w[at + 6] = 0;
    this.floats[id * (STRIDE / 2) + 4] = expire;
  }

  setLocation(id: number, seg: number, off: number): void {
    this.words[id * STRIDE] = seg;
    this.words[id * STRIDE + 1] = off;
  }
  setFlags(id: number, flags: number): void {
    const at = id * STRIDE + 5;
    this.words[at] = ((this.words[at] as number) & 0xffffff) | (flags << 24);
  }
  setPins(id: number, pins: number): void {
    this.words[id * STRIDE + 6] = pins;
  }
  setExpire(id: number, expire: number): void {
    this.floats[id * (STRIDE / 2) + 4] = expire;
  }

  /** A fresh id; its fields hold garbage until the caller sets them. */
  take(): number {
    const reused = this.freeIds.pop();
    if (reused !== undefined) return reused;
    if (this.top === this.capacity) this.grow();
    return this.top++;
  }

  release(id: number): void {
    this.words[id * STRIDE + 5] = 0;
    this.words[id * STRIDE + 6] = 0;
    this.freeIds.push(id);
  }

  clear(): void {
    this.top = 0;
    this.freeIds.length = 0;
    this.words = new Uint32Array(INITIAL_CAPACITY * STRIDE);
    this.floats = new Float64Array(this.words.buffer);
    this.capacity = INITIAL_CAPACITY;
  }

  private grow(): void {
    // Pages past the copied part are not touched until used, so a larger step costs
    // address space, not resident memory.
    const next = this.capacity < 1 << 20 ? this.capacity * 2 : Math.ceil(this.capacity * 1.5);
    const words = new Uint32Array(next * STRIDE);
    words.set(this.words.subarray(0, this.top * STRIDE));
    this.words = words;
    this.floats = new Float64Array(words.buffer);
    this.capacity = next;
  }
}
