import { createReadStream } from 'node:fs';
import { createHash } from 'node:crypto';
import { dataLoss } from '../core';
import type { ArtifactHeader } from './format';
import { RecordsDecoder } from './records-decoder';

export interface VerifiedArtifact {
  header: ArtifactHeader;
  keyCount: number;
  bytes: number;
  sha256: string;
}

/**
 * Checks an artifact file end to end: structure, every record, the trailer's key count
 * and inner SHA-256, and, when given, the expected SHA-256 of the whole file.
 */
export async function verifyArtifactFile(
  path: string,
  expectedSha256?: string,
): Promise<VerifiedArtifact> {
  const decoder = new RecordsDecoder({ verifyInnerDigest: true });
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const piece of createReadStream(path, { highWaterMark: 1 << 20 })) {
    const buf = piece as Buffer;
    hash.update(buf);
    decoder.push(buf);
    bytes += buf.length;
  }
  const { header, keyCount } = decoder.finish();
  const sha256 = hash.digest('hex');
  if (expectedSha256 && expectedSha256 !== sha256) {
    throw dataLoss(`${path}: SHA-256 ${sha256} differs from the expected ${expectedSha256}`);
  }
  return { header, keyCount, bytes, sha256 };
}
