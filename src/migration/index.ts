export * from './status';
export * from './change-feed';
export * from './migration-job';
export * from './registry';
export * from './recover';
export * from './source-handoff';
