import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { DEFAULT_CHUNK_SIZE, encodeChunk } from '../snapshot/chunk-codec';
import { tryDecodeHeader } from '../snapshot/format';
import type { InstallResult__Output } from '../generated/shardsnap/v1/InstallResult';
import type { SnapshotChunk } from '../generated/shardsnap/v1/SnapshotChunk';
import { compressionToWire } from '../wire/convert';
import { type CallOptions, type CallScope, runCall } from '../wire/call-options';
import type { Connection } from '../wire/connection';
import { dataLoss } from '../core/errors';
import type { InstallFileRequest } from './requests';

function finalSha(
  hash: ReturnType<typeof createHash>,
  expected: string | undefined,
  path: string,
): string {
  const sha256 = hash.digest('hex');
  if (expected && expected !== sha256) {
    throw dataLoss(`${path}: SHA-256 ${sha256} differs from the expected ${expected}`);
  }
  return sha256;
}

/**
 * Pushes an artifact file into a node with InstallSnapshot: chunks with CRC32C, the
 * snapshot's info on the first, the SHA-256 of the whole file on the last. Waits for the
 * transport to drain between chunks.
 */
export function installFile(
  conn: Connection,
  request: InstallFileRequest,
  options: CallOptions = {},
): Promise<InstallResult__Output> {
  return runCall('InstallSnapshot', options, async (scope) => {
    await conn.whenReady(scope.signal);
    return send(conn, request, scope);
  });
}

async function send(
  conn: Connection,
  options: InstallFileRequest,
  scope: CallScope,
): Promise<InstallResult__Output> {
  const { path } = options;
  const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
  const file = await open(path, 'r');
  const total = (await file.stat()).size;
  let done!: (r: InstallResult__Output) => void;
  let fail!: (e: unknown) => void;
  const result = new Promise<InstallResult__Output>((resolve, reject) => {
    done = resolve;
    fail = reject;
  });
  const stream = conn.snapshots.InstallSnapshot(
    scope.deadline ? { deadline: scope.deadline } : {},
    (error, response) => {
      if (error) fail(error);
      else done(response as InstallResult__Output);
    },
  );
  scope.onCancel(() => stream.cancel());
  // Handled at once: a file refused before the first chunk cancels the call, and its
  // CANCELLED answer must not surface as an unhandled rejection.
  let stopped = false;
  void result.catch(() => (stopped = true));
  try {
    const hash = createHash('sha256');
    const head = Buffer.alloc(Math.min(total, 1 << 20));
    await file.read(head, 0, head.length, 0);
    const parsed = tryDecodeHeader(head);
    if (!parsed) throw dataLoss(`${path}: artifact header is incomplete`);
    let offset = 0;
    do {
      let length = Math.min(chunkSize, total - offset);
      // The last chunk carries the whole 32-byte inner digest, checked below.
      const rest = total - offset - length;
      if (rest > 0 && rest < 32) length -= 32;
      const raw = Buffer.allocUnsafe(length);
      const { bytesRead } = await file.read(raw, 0, length, offset);
      if (bytesRead !== length) throw dataLoss(`${path}: file shrank while being read`);
      const last = offset + length === total;
      if (last) {
        // Every artifact ends with the SHA-256 of all its bytes before those 32: check it
        // (and the sidecar's whole-file SHA-256, when there is one) before the last chunk
        // goes out, so a file corrupted at rest is never installed.
        const split = raw.length - 32;
        if (split < 0) throw dataLoss(`${path}: too short to be an artifact`);
        hash.update(raw.subarray(0, split));
        if (!hash.copy().digest().equals(raw.subarray(split))) {
          throw dataLoss(`${path}: artifact does not match its inner SHA-256 (corrupted file)`);
        }
        hash.update(raw.subarray(split));
      } else {
        hash.update(raw);
      }
      const chunk = encodeChunk(offset, raw, options.compression ?? 'none');
      const message: SnapshotChunk = {
        snapshotId: parsed.header.snapshot_id,
        offset,
        data: chunk.data,
        crc32c: chunk.crc32c,
        compression: compressionToWire(chunk.compression),
        rawLength: chunk.rawLength,
        last,
        sha256: last ? finalSha(hash, options.expectedSha256, path) : '',
        info:
          offset === 0
            ? {
                id: parsed.header.snapshot_id,
                slots: parsed.header.slots,
                seq: parsed.header.seq,
                kind: parsed.header.kind,
                backend: parsed.header.backend,
                strategy: parsed.header.strategy,
                sizeBytes: total,
                formatVersion: parsed.header.format_version,
              }
            : null,
        force: offset === 0 && options.force === true,
      };
      offset += length;
      if (!stream.write(message)) {
        await new Promise<void>((resolve) => {
          stream.once('drain', resolve);
          void result.catch(() => resolve());
        });
      }
      options.onProgress?.(offset, total);
    } while (offset < total && !stopped);
    stream.end();
    return await result;
  } catch (error) {
    stream.cancel();
    throw error;
  } finally {
    await file.close();
  }
}
