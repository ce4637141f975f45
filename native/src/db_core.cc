#include "db_core.h"

#include "errors.h"

namespace shardsnap {

SnapshotState::SnapshotState(std::shared_ptr<DbCore> owner, const rocksdb::Snapshot* native)
    : core(std::move(owner)), snap(native), sequence(native->GetSequenceNumber()) {}

bool SnapshotState::Usable() const {
  // The open check must come first: `snap` is written by the close worker.
  return core->IsOpen() && !released && snap != nullptr;
}

void SnapshotState::Unpin() {
  --pins;
  MaybeFree();
}

void SnapshotState::Release() {
  released = true;
  MaybeFree();
}

void SnapshotState::MaybeFree() {
  if (!core->Touchable() || snap == nullptr || !released || pins > 0) return;
  core->db()->ReleaseSnapshot(snap);
  snap = nullptr;
  core->Untrack(this);
}

void IteratorState::Dispose() {
  if (!core->Touchable() || phase == Phase::kClosed) return;
  it.reset();
  phase = Phase::kClosed;
  if (snapshot) {
    std::shared_ptr<SnapshotState> pinned = std::move(snapshot);
    pinned->Unpin();
  }
  core->Untrack(this);
}

class CloseDbWorker : public Napi::AsyncWorker {
 public:
  CloseDbWorker(Napi::Env env, std::shared_ptr<DbCore> core)
      : Napi::AsyncWorker(env, "shardsnap:closeDb"), core_(std::move(core)) {}

  void Execute() override { status_ = core_->CloseOnWorker(); }
  void OnOK() override { core_->FinishClose(Env(), status_); }

 private:
  std::shared_ptr<DbCore> core_;
  rocksdb::Status status_;
};

DbCore::~DbCore() {
  // Only reached when every JS handle was garbage collected without close():
  // children hold shared_ptrs, so none can be tracked here. Closing inline is
  // the last chance to flush and unlock the db.
  if (db_ != nullptr) {
    db_->Close().PermitUncheckedError();
    delete db_;
  }
}

void DbCore::EndOp(Napi::Env env) {
  --pending_;
  MaybeStartClose(env);
}

Napi::Promise DbCore::Close(Napi::Env env) {
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  if (state_ == State::kClosed) {
    deferred.Resolve(env.Undefined());
    return deferred.Promise();
  }
  closeWaiters_.push_back(deferred);
  state_ = State::kClosing;
  MaybeStartClose(env);
  return deferred.Promise();
}

void DbCore::MaybeStartClose(Napi::Env env) {
  if (state_ != State::kClosing || pending_ > 0 || closeQueued_) return;
  closeQueued_ = true;
  Napi::HandleScope scope(env);
  (new CloseDbWorker(env, shared_from_this()))->Queue();
}

rocksdb::Status DbCore::CloseOnWorker() {
  // Iterators before snapshots: an iterator may still reference its snapshot.
  for (auto& entry : iterators_) {
    entry.second->it.reset();
    entry.second->phase = IteratorState::Phase::kClosed;
  }
  for (auto& entry : snapshots_) {
    if (entry.second->snap != nullptr) {
      db_->ReleaseSnapshot(entry.second->snap);
      entry.second->snap = nullptr;
    }
  }
  rocksdb::Status status = db_->Close();
  delete db_;
  db_ = nullptr;
  // Read-only and some other DB flavours clean up in the destructor instead.
  if (status.IsNotSupported()) status = rocksdb::Status::OK();
  return status;
}

void DbCore::FinishClose(Napi::Env env, const rocksdb::Status& status) {
  state_ = State::kClosed;
  // Dropping the tracked children here (not on the worker) keeps their
  // destruction on the JS thread, where the rest of their owners live.
  iterators_.clear();
  snapshots_.clear();
  std::vector<Napi::Promise::Deferred> waiters;
  waiters.swap(closeWaiters_);
  for (Napi::Promise::Deferred& waiter : waiters) {
    if (status.ok()) {
      waiter.Resolve(env.Undefined());
    } else {
      waiter.Reject(StatusError(env, status).Value());
    }
  }
}

void DbCore::Track(const std::shared_ptr<SnapshotState>& snapshot) {
  snapshots_.emplace(snapshot.get(), snapshot);
}

void DbCore::Untrack(SnapshotState* snapshot) { snapshots_.erase(snapshot); }

void DbCore::Track(const std::shared_ptr<IteratorState>& iterator) {
  iterators_.emplace(iterator.get(), iterator);
}

void DbCore::Untrack(IteratorState* iterator) { iterators_.erase(iterator); }

}  // namespace shardsnap
