export * from './convert';
export * from './proto';
export * from './status';
export * from './connection';
export * from './grpc-frames';
export * from './piece-reader';
export * from './h2-connection';
export * from './security';
