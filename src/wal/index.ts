export * from './types';
export * from './wal';
export { SEGMENT_MAGIC, segmentFileName, parseSegmentFileName } from './format';
