export * from './node';
export * from './config';
export type { NodeContext } from './node-context';
