export * from './convert';
export * from './proto';
export * from './status';
