#pragma once

#include <napi.h>
#include <rocksdb/db.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace shardsnap {

class DbCore;

// A RocksDB snapshot owned by a db. The native snapshot is released once the
// user has released it (or it was garbage collected) and nothing pins it any
// more; reads and iterators pin it while they use it.
struct SnapshotState {
  SnapshotState(std::shared_ptr<DbCore> owner, const rocksdb::Snapshot* native);

  bool Usable() const;
  void Pin() { ++pins; }
  void Unpin();
  void Release();

  const std::shared_ptr<DbCore> core;
  const rocksdb::Snapshot* snap;
  const uint64_t sequence;
  bool released = false;
  int pins = 0;

 private:
  void MaybeFree();
};

// A RocksDB iterator owned by a db. The bound strings live here because
// ReadOptions only stores pointers to Slices that must outlive the iterator.
struct IteratorState {
  enum class Phase { kOpen, kClosing, kClosed };

  explicit IteratorState(std::shared_ptr<DbCore> owner) : core(std::move(owner)) {}

  // JS-thread teardown for an iterator nothing is using: drops the native
  // iterator, unpins the snapshot and stops tracking. Callers must hold a
  // shared_ptr to this state since untracking may drop the last other one.
  void Dispose();

  const std::shared_ptr<DbCore> core;
  std::shared_ptr<SnapshotState> snapshot;
  std::string lower;
  std::string upper;
  rocksdb::Slice lowerSlice;
  rocksdb::Slice upperSlice;
  bool hasLower = false;
  rocksdb::ReadOptions readOptions;
  std::unique_ptr<rocksdb::Iterator> it;
  Phase phase = Phase::kOpen;
  bool busy = false;
  bool started = false;
  std::vector<Napi::Promise::Deferred> closeWaiters;
};

// Shared ownership of an open rocksdb::DB. The JS Db object, snapshots,
// iterators and in-flight workers all hold a shared_ptr, so the handle stays
// valid for as long as any of them can reach it.
//
// Threading: state is mutated on the JS thread only, with one exception: the
// close worker tears down tracked iterators/snapshots on the threadpool. That
// worker is only queued once no operation is in flight, and from then on the
// JS thread leaves the native handles alone (see Touchable()).
class DbCore : public std::enable_shared_from_this<DbCore> {
 public:
  enum class State { kOpen, kClosing, kClosed };

  explicit DbCore(rocksdb::DB* db) : db_(db) {}
  ~DbCore();
  DbCore(const DbCore&) = delete;
  DbCore& operator=(const DbCore&) = delete;

  rocksdb::DB* db() const { return db_; }

  // New user operations are accepted only while open.
  bool IsOpen() const { return state_ == State::kOpen; }
  // Whether the JS thread may still touch native handles: true until the
  // close worker has been queued.
  bool Touchable() const { return state_ != State::kClosed && !closeQueued_; }

  void BeginOp() { ++pending_; }
  void EndOp(Napi::Env env);

  Napi::Promise Close(Napi::Env env);

  void Track(const std::shared_ptr<SnapshotState>& snapshot);
  void Untrack(SnapshotState* snapshot);
  void Track(const std::shared_ptr<IteratorState>& iterator);
  void Untrack(IteratorState* iterator);

 private:
  friend class CloseDbWorker;

  void MaybeStartClose(Napi::Env env);
  rocksdb::Status CloseOnWorker();
  void FinishClose(Napi::Env env, const rocksdb::Status& status);

  rocksdb::DB* db_;
  State state_ = State::kOpen;
  bool closeQueued_ = false;
  int pending_ = 0;
  std::vector<Napi::Promise::Deferred> closeWaiters_;
  // Tracked children keep their state alive until they are released or the
  // db closes, whichever comes first.
  std::unordered_map<SnapshotState*, std::shared_ptr<SnapshotState>> snapshots_;
  std::unordered_map<IteratorState*, std::shared_ptr<IteratorState>> iterators_;
};

}  // namespace shardsnap
