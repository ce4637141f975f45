import { createHash, randomBytes } from 'node:crypto';
import test from 'ava';
import { sha256Stream } from '../src/snapshot';

for (const background of [false, true]) {
  test(`sha256Stream (${background ? 'background thread' : 'calling thread'}) equals a one-shot SHA-256`, async (t) => {
    const pieces = Array.from({ length: 12 }, (_, i) =>
      randomBytes(i === 3 ? 0 : (i * 977_131) % (3 << 20)),
    );
    const stream = sha256Stream({ background });
    const whole = createHash('sha256');
    for (const [i, piece] of pieces.entries()) {
      stream.update(piece);
      whole.update(piece);
      // The caller may reuse its buffer at once.
      piece.fill(0);
      if (i === 6) t.deepEqual(await stream.peek(), whole.copy().digest(), 'peek mid-stream');
    }
    t.is(await stream.digest(), whole.digest('hex'));
    const dropped = sha256Stream({ background });
    dropped.update(randomBytes(5 << 20));
    dropped.discard();
    dropped.discard();
  });
}
