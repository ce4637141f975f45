import { createReadStream } from 'node:fs';
import { mkdir, open, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { dataLoss } from '../core';
import { FilesDecoder } from './files-format';
import { type ArtifactHeader, tryDecodeHeader } from './format';
import { RecordsDecoder } from './records-decoder';

export interface VerifiedArtifact {
  header: ArtifactHeader;
  /** Records in a records artifact; for a files artifact, the key count its build reported. */
  keyCount: number;
  bytes: number;
  sha256: string;
  /** Files of a files artifact (empty for records). */
  files: Array<{ name: string; size: number }>;
}

/** Parses any artifact kind; files pieces go to `onFile` when given. */
async function walkArtifact(
  path: string,
  onFile?: (name: string, data: Buffer) => Promise<void>,
): Promise<{
  header: ArtifactHeader;
  keyCount: number;
  bytes: number;
  sha256: string;
  files: Array<{ name: string; size: number }>;
}> {
  const hash = createHash('sha256');
  let bytes = 0;
  let head = Buffer.alloc(0);
  let push: ((piece: Buffer) => Promise<void>) | undefined;
  let finish:
    | (() => {
        header: ArtifactHeader;
        keyCount: number;
        files: Array<{ name: string; size: number }>;
      })
    | undefined;
  for await (const piece of createReadStream(path, { highWaterMark: 1 << 20 })) {
    const buf = piece as Buffer;
    hash.update(buf);
    bytes += buf.length;
    if (!push) {
      head = Buffer.concat([head, buf]);
      const parsed = tryDecodeHeader(head);
      if (!parsed) continue;
      if (parsed.header.kind === 'files') {
        const files = new FilesDecoder(async (file, _i, data) => onFile?.(file.name, data));
        push = (p) => files.push(p);
        finish = () => {
          const header = files.finish();
          return { header, keyCount: header.key_count ?? 0, files: header.files };
        };
      } else {
        const records = new RecordsDecoder({ verifyInnerDigest: true });
        push = (p) => {
          records.push(p);
          return Promise.resolve();
        };
        finish = () => ({ ...records.finish(), files: [] });
      }
      await push(head);
      continue;
    }
    await push(buf);
  }
  if (!finish) throw dataLoss(`${path}: artifact ended before its header`);
  return { ...finish(), bytes, sha256: hash.digest('hex') };
}

/**
 * Checks an artifact file end to end: structure, every record (or every file's CRC32C),
 * the trailer and its inner SHA-256, and, when given, the SHA-256 of the whole file.
 */
export async function verifyArtifactFile(
  path: string,
  expectedSha256?: string,
): Promise<VerifiedArtifact> {
  const result = await walkArtifact(path);
  if (expectedSha256 && expectedSha256 !== result.sha256) {
    throw dataLoss(`${path}: SHA-256 ${result.sha256} differs from the expected ${expectedSha256}`);
  }
  return result;
}

/**
 * Writes the files of a files artifact (a RocksDB checkpoint) into `dir`, which must not
 * hold them yet, after checking the artifact as `verifyArtifactFile` does. The result is
 * a RocksDB database directory (for `ldb`, or `serve --restore-from`).
 */
export async function unpackArtifactFile(path: string, dir: string): Promise<VerifiedArtifact> {
  await mkdir(dir, { recursive: true });
  const handles = new Map<string, { file: Awaited<ReturnType<typeof open>>; at: number }>();
  try {
    const result = await walkArtifact(path, async (name, data) => {
      let handle = handles.get(name);
      if (!handle) {
        handle = { file: await open(join(dir, name), 'wx'), at: 0 };
        handles.set(name, handle);
      }
      await handle.file.write(data, 0, data.length, handle.at);
      handle.at += data.length;
    });
    if (result.header.kind !== 'files')
      throw dataLoss(`${path} is a ${result.header.kind} artifact, not files`);
    for (const file of result.files) {
      if (file.size === 0 && !handles.has(file.name)) await writeFile(join(dir, file.name), '');
    }
    for (const { file } of handles.values()) await file.sync();
    return result;
  } finally {
    for (const { file } of handles.values()) await file.close();
  }
}
