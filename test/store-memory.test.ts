import test from 'ava';
import { MemoryStore } from '../src/store';
import { runStoreSuite } from './helpers/store-suite';

runStoreSuite({
  test,
  name: 'memory',
  factory: () => Promise.resolve({ store: new MemoryStore() }),
});
