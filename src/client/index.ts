export * from './client';
export * from './install-file';
export * from './synthetic';
export * from './load';
export * from './migrate';
export * from './routing-client';
