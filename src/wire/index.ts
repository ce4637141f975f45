export * from './convert';
export * from './proto';
export * from './status';
export * from './connection';
