export * from './local-snapshots';
export * from './durable-memory';
export * from './recover';
export { WalJournal } from './journal';
export { replayJournal, walGap } from './replay';
export { JournalKinds, decodeJournalEntry } from './journal-codec';
