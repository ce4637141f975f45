import { invalidArgument } from '../core';

export const MANIFEST_NAME = 'manifest.json';
export const ARTIFACT_NAME = 'artifact.bin';
const SCHEME = 's3://';

/** Where one archive lives: a "directory" of a bucket holding its artifact and manifest. */
export interface ArchiveLocation {
  bucket: string;
  /** Key prefix of the archive's objects, ending with "/". */
  dir: string;
  manifestKey: string;
  artifactKey: string;
}

export function isArchiveUri(source: string): boolean {
  return source.startsWith(SCHEME);
}

/** S3 bucket names (3..63 of a-z, 0-9, ".", "-"); dots and dashes not at the ends. */
export function validateBucket(bucket: string): string {
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw invalidArgument(`"${bucket}" is not a valid bucket name (3-63 of a-z, 0-9, ".", "-")`);
  }
  return bucket;
}

export function archiveLocation(bucket: string, dir: string): ArchiveLocation {
  const base = dir.endsWith('/') ? dir : `${dir}/`;
  return {
    bucket: validateBucket(bucket),
    dir: base,
    manifestKey: `${base}${MANIFEST_NAME}`,
    artifactKey: `${base}${ARTIFACT_NAME}`,
  };
}

/** The archive's URI: the manifest's key, `s3://bucket/<dir>/manifest.json`. */
export function archiveUri(location: ArchiveLocation): string {
  return `${SCHEME}${location.bucket}/${location.manifestKey}`;
}

/**
 * Parses an archive URI. The canonical form names the manifest
 * (`s3://bucket/<dir>/manifest.json`); the directory (`s3://bucket/<dir>/`) is accepted too.
 */
export function parseArchiveUri(uri: string): ArchiveLocation {
  if (!isArchiveUri(uri)) throw invalidArgument(`"${uri}" is not an s3://bucket/key URI`);
  const rest = uri.slice(SCHEME.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const key = slash < 0 ? '' : rest.slice(slash + 1);
  if (!key || key === MANIFEST_NAME || key.startsWith('/')) {
    throw invalidArgument(`"${uri}" names no archive: expected s3://bucket/<dir>/${MANIFEST_NAME}`);
  }
  if (key.endsWith(`/${ARTIFACT_NAME}`)) {
    throw invalidArgument(
      `"${uri}" names the artifact; an archive is named by its ${MANIFEST_NAME}`,
    );
  }
  const dir = key.endsWith(`/${MANIFEST_NAME}`) ? key.slice(0, -MANIFEST_NAME.length) : key;
  return archiveLocation(bucket, dir);
}
