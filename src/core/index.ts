export * from './errors';
export * from './slots';
export * from './slot-range';
export * from './values';
export * from './mutation';
export * from './record-codec';
export * from './digest';
export * from './slab';
