/**
 * The keyspace's records as columns of typed arrays, addressed by record id: where the
 * key and value bytes are in the arena, the key's hash and slot, the value's type and
 * expiry, and bookkeeping flags. Ids of freed records are reused.
 *
 * One record costs 38 bytes here, and no object on the V8 heap.
 */
export const FLAG_INDEXED = 1;
/** The value is a JS object in `objects` (a large collection), not bytes in the arena. */
export const FLAG_OBJECT = 2;
/** Out of the index but pinned by a view: freed when the last pin goes. */
export const FLAG_RETIRED = 4;

const INITIAL_CAPACITY = 1024;

export class RecordTable {
  seg = new Uint32Array(INITIAL_CAPACITY);
  off = new Uint32Array(INITIAL_CAPACITY);
  keyLen = new Uint32Array(INITIAL_CAPACITY);
  valLen = new Uint32Array(INITIAL_CAPACITY);
  hash = new Uint32Array(INITIAL_CAPACITY);
  slot = new Uint16Array(INITIAL_CAPACITY);
  /** VALUE_TYPE_CODES of the value; 0 = a free id. */
  type = new Uint8Array(INITIAL_CAPACITY);
  flags = new Uint8Array(INITIAL_CAPACITY);
  /** Views that still need the record as it is. */
  pins = new Uint16Array(INITIAL_CAPACITY);
  /** Absolute expiry in Unix ms; 0 = none. */
  expire = new Float64Array(INITIAL_CAPACITY);
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

  /** A fresh id; its columns hold garbage until the caller sets them. */
  take(): number {
    const reused = this.freeIds.pop();
    if (reused !== undefined) return reused;
    if (this.top === this.capacity) this.grow();
    return this.top++;
  }

  release(id: number): void {
    this.type[id] = 0;
    this.flags[id] = 0;
    this.pins[id] = 0;
    this.freeIds.push(id);
  }

  clear(): void {
    this.top = 0;
    this.freeIds.length = 0;
    this.type.fill(0);
  }

  private grow(): void {
    // Pages past the copied part are not touched until used, so a larger step costs
    // address space, not resident memory.
    const next = this.capacity < 1 << 20 ? this.capacity * 2 : Math.ceil(this.capacity * 1.5);
    this.seg = growArray(this.seg, new Uint32Array(next));
    this.off = growArray(this.off, new Uint32Array(next));
    this.keyLen = growArray(this.keyLen, new Uint32Array(next));
    this.valLen = growArray(this.valLen, new Uint32Array(next));
    this.hash = growArray(this.hash, new Uint32Array(next));
    this.slot = growArray(this.slot, new Uint16Array(next));
    this.type = growArray(this.type, new Uint8Array(next));
    this.flags = growArray(this.flags, new Uint8Array(next));
    this.pins = growArray(this.pins, new Uint16Array(next));
    this.expire = growArray(this.expire, new Float64Array(next));
    this.capacity = next;
  }
}

function growArray<T extends { set(source: ArrayLike<number>): void }>(
  from: ArrayLike<number>,
  to: T,
): T {
  to.set(from);
  return to;
}
