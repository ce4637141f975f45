import test from 'ava';
import { PayloadPool } from '../src/durability/payload-pool';

test('payload buffers are reused once released; large ones are not kept', (t) => {
  const pool = new PayloadPool(4096, 2, 1024);
  const a = pool.take(100);
  t.is(a.payload.length, 100);
  t.is(a.payload.buffer.byteLength >= 1024, true, 'small payloads share a buffer of minBytes');
  a.release();
  const b = pool.take(1000);
  t.is(b.payload.buffer, a.payload.buffer, 'the released buffer serves the next payload');
  const c = pool.take(1000);
  t.not(c.payload.buffer, b.payload.buffer, 'a buffer in use is not handed out twice');
  const big = pool.take(10_000);
  t.is(big.payload.length, 10_000);
  big.release();
  b.release();
  c.release();
  const d = pool.take(3000);
  t.not(d.payload.buffer, big.payload.buffer, 'a payload above keptBytes is never kept');
  t.is(d.payload.length, 3000);
});
