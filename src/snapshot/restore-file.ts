import { open } from 'node:fs/promises';
import type { Store } from '../store';
import { type InstallOutcome, ArtifactInstaller } from './installer';
import { verifyArtifactFile } from './verify-file';

/**
 * Installs an artifact file into a local store: checked end to end first (the file's
 * own digests are all it has), then fed to the installer like a fetched stream.
 */
export async function installArtifactFile(store: Store, path: string): Promise<InstallOutcome> {
  const { sha256 } = await verifyArtifactFile(path);
  const installer = new ArtifactInstaller(store);
  const file = await open(path, 'r');
  try {
    const piece = Buffer.allocUnsafe(1 << 20);
    let offset = 0;
    for (;;) {
      const { bytesRead } = await file.read(piece, 0, piece.length, offset);
      if (bytesRead === 0) break;
      await installer.push(offset, Buffer.from(piece.subarray(0, bytesRead)));
      offset += bytesRead;
    }
    return await installer.finish(sha256);
  } finally {
    await installer.abort();
    await file.close();
  }
}
