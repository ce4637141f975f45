export * from './strategy';
export * from './registry';
export { memoryScan } from './memory-scan';
