import { checksumMismatch, invalidArgument } from '../core/errors';
import { sha256Stream } from '../snapshot/sha256-stream';
import { NodeFetch } from '../transfer/node-source';
import { createSnapshot, deleteRemoteSnapshot } from '../transfer/remote-snapshot';
import type { CallOptions } from '../wire/call-options';
import type { Connection } from '../wire/connection';
import { serverStream } from '../wire/server-stream';
import type { FetchRequest } from './requests';
import type { FetchedChunk } from './responses';

/**
 * A snapshot's artifact as verified chunks (see ShardsnapClient.fetch). NodeFetch checks
 * each chunk and resumes dropped streams; this adds the SHA-256 of the whole, over the
 * caller's `prefix` and every chunk, compared with the node's once the last chunk was
 * consumed: a mismatch ends the iteration with CHECKSUM_MISMATCH instead of normally.
 */
export function fetchChunks(
  conn: Connection,
  request: FetchRequest,
  options: CallOptions = {},
): AsyncGenerator<FetchedChunk> {
  const offset = request.offset ?? 0;
  return serverStream<FetchedChunk>(
    conn,
    'FetchSnapshot',
    (_callOptions, signal) => {
      let created: string | undefined;
      return {
        messages: (async function* (): AsyncGenerator<FetchedChunk> {
          if (!Number.isSafeInteger(offset) || offset < 0) {
            throw invalidArgument(`fetch: offset ${offset} is not a byte offset`);
          }
          if (offset > 0 && request.prefix === undefined) {
            throw invalidArgument(
              'fetch: resuming at an offset needs `prefix` (the bytes before it), so that the whole artifact can be checked',
            );
          }
          const snapshotId =
            request.snapshotId ?? (created = (await createSnapshot(conn, request, { signal })).id);
          const hash = sha256Stream();
          let yielded = false;
          try {
            const hashed = await hashPrefix(hash, request.prefix);
            if (hashed !== offset) {
              throw invalidArgument(`fetch: prefix holds ${hashed} bytes, offset is ${offset}`);
            }
            const source = new NodeFetch(conn, {
              snapshotId,
              offset,
              chunkSize: request.chunkSize,
              compression: request.compression,
              maxRetries: request.maxRetries,
            });
            for await (const chunk of source.chunks(signal)) {
              hash.update(chunk.data);
              yielded = true;
              yield {
                snapshotId,
                offset: chunk.offset,
                data: chunk.data,
                totalBytes: source.totalBytes,
              };
            }
            const sha256 = await hash.digest();
            const expected = [source.expectedSha256(), request.expectedSha256 ?? ''];
            for (const want of expected) {
              if (want && want !== sha256) {
                throw checksumMismatch(
                  `fetched artifact SHA-256 ${sha256} differs from ${want} [snapshot=${snapshotId}]`,
                  { snapshotId, offset: 0 },
                );
              }
            }
            // A snapshot made for this fetch is of no use once it is complete.
            if (created) await deleteRemoteSnapshot(conn, created);
          } catch (error) {
            // After a failure it stays (until the node's TTL) so that the fetch can be
            // resumed from the chunks' snapshotId, unless the caller never saw that id.
            if (created && !yielded) await deleteRemoteSnapshot(conn, created);
            throw error;
          } finally {
            hash.discard();
          }
        })(),
        // The chunks' own signal stops their HTTP/2 stream.
        cancel: () => undefined,
      };
    },
    options,
  );
}

async function hashPrefix(
  hash: { update(piece: Buffer): void },
  prefix: FetchRequest['prefix'],
): Promise<number> {
  if (prefix === undefined) return 0;
  const pieces: Iterable<Uint8Array> | AsyncIterable<Uint8Array> =
    prefix instanceof Uint8Array ? [prefix] : prefix;
  let bytes = 0;
  for await (const piece of pieces) {
    const buffer = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    hash.update(buffer);
    bytes += buffer.length;
  }
  return bytes;
}
