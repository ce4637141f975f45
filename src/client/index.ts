export * from './client';
export * from './connection';
export * from './fetch-stream';
export * from './fetch-to-file';
export * from './install-file';
export * from './pull';
export * from './snapshots';
