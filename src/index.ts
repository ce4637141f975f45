export * from './core';
export * from './store';
export * from './snapshot';
export * from './strategies';
export * from './wire';
export * from './server';
export * from './client';
export * from './archive';
