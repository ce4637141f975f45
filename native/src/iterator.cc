#include "iterator.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "addon.h"
#include "args.h"
#include "db.h"
#include "errors.h"
#include "snapshot.h"
#include "worker.h"

namespace shardsnap {

namespace {

// Deletes the native iterator off the JS thread, then finishes the teardown
// and settles every close() caller.
class IteratorCloseWorker : public Napi::AsyncWorker {
 public:
  IteratorCloseWorker(Napi::Env env, std::shared_ptr<IteratorState> state)
      : Napi::AsyncWorker(env, "shardsnap:iteratorClose"), op_(env, state->core), state_(std::move(state)) {}

  void Execute() override { state_->it.reset(); }

  void OnOK() override {
    Napi::Env env = Env();
    state_->Dispose();
    std::vector<Napi::Promise::Deferred> waiters;
    waiters.swap(state_->closeWaiters);
    for (Napi::Promise::Deferred& waiter : waiters) waiter.Resolve(env.Undefined());
  }

 private:
  OpGuard op_;
  std::shared_ptr<IteratorState> state_;
};

void StartClose(Napi::Env env, const std::shared_ptr<IteratorState>& state) {
  (new IteratorCloseWorker(env, state))->Queue();
}

// Reads up to maxEntries / maxBytes into one arena so a whole batch crosses
// into JS as a single buffer plus a table of lengths.
class NextWorker : public DbWorker {
 public:
  NextWorker(Napi::Env env, std::shared_ptr<IteratorState> state, Napi::Object owner,
             uint64_t maxEntries, uint64_t maxBytes)
      : DbWorker(env, "shardsnap:iteratorNext", state->core),
        state_(std::move(state)),
        owner_(Napi::Persistent(owner)),
        maxEntries_(maxEntries),
        maxBytes_(maxBytes) {
    state_->busy = true;
  }

 protected:
  rocksdb::Status Run() override {
    rocksdb::Iterator* it = state_->it.get();
    if (!state_->started) {
      state_->started = true;
      if (state_->hasLower) {
        it->Seek(state_->lowerSlice);
      } else {
        it->SeekToFirst();
      }
    }
    arena_.reserve(static_cast<size_t>(std::min<uint64_t>(maxBytes_, kMaxReserve)));
    uint64_t bytes = 0;
    while (it->Valid() && lengths_.size() / 2 < maxEntries_) {
      rocksdb::Slice key = it->key();
      rocksdb::Slice value = it->value();
      uint64_t size = key.size() + value.size();
      // Always take the first entry so an oversized value cannot stall the scan.
      if (!lengths_.empty() && bytes + size > maxBytes_) break;
      arena_.append(key.data(), key.size());
      arena_.append(value.data(), value.size());
      lengths_.push_back(static_cast<uint32_t>(key.size()));
      lengths_.push_back(static_cast<uint32_t>(value.size()));
      bytes += size;
      it->Next();
    }
    done_ = !it->Valid();
    return it->status();
  }

  void Done(Napi::Env env) override {
    state_->busy = false;
    if (state_->phase == IteratorState::Phase::kClosing) StartClose(env, state_);
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object result = Napi::Object::New(env);
    auto* owned = new std::string(std::move(arena_));
    result.Set("data", Napi::Buffer<char>::NewOrCopy(
                           env, owned->data(), owned->size(),
                           [](Napi::Env, char*, std::string* bytes) { delete bytes; }, owned));
    Napi::Uint32Array lengths = Napi::Uint32Array::New(env, lengths_.size());
    if (!lengths_.empty()) {
      std::memcpy(lengths.Data(), lengths_.data(), lengths_.size() * sizeof(uint32_t));
    }
    result.Set("lengths", lengths);
    result.Set("done", Napi::Boolean::New(env, done_));
    return result;
  }

 private:
  static constexpr uint64_t kMaxReserve = 4 << 20;

  std::shared_ptr<IteratorState> state_;
  Napi::ObjectReference owner_;
  const uint64_t maxEntries_;
  const uint64_t maxBytes_;
  std::string arena_;
  std::vector<uint32_t> lengths_;
  bool done_ = false;
};

uint64_t PositiveArg(const Napi::Value& value, const char* name) {
  if (!value.IsNumber()) throw Napi::TypeError::New(value.Env(), std::string(name) + " must be a number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 1)) {
    throw Napi::RangeError::New(value.Env(), std::string(name) + " must be at least 1");
  }
  return number >= 9007199254740992.0 ? UINT64_MAX : static_cast<uint64_t>(number);
}

}  // namespace

Napi::Function IteratorWrap::Define(Napi::Env env) {
  return DefineClass(env, "Iterator",
                     {
                         InstanceMethod<&IteratorWrap::Next>("next"),
                         InstanceMethod<&IteratorWrap::Close>("close"),
                     });
}

Napi::Object IteratorWrap::NewInstance(Napi::Env env, std::shared_ptr<IteratorState> state) {
  return NewWrapped(env, GetAddonData(env).iterator, &state);
}

IteratorWrap::IteratorWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<IteratorWrap>(info) {
  state_ = *UnpackWrapped<std::shared_ptr<IteratorState>>(
      info, "Iterator cannot be constructed directly; use db.iterator()");
}

IteratorWrap::~IteratorWrap() {
  // A pending close() already owns the teardown. `phase` is only read once the
  // db is known not to be tearing the iterator down on its close worker.
  if (state_ && state_->core->Touchable() && state_->phase == IteratorState::Phase::kOpen) {
    state_->Dispose();
  }
}

Napi::Value IteratorWrap::Next(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    if (!state_->core->IsOpen()) throw ClosedError(env, "database");
    if (state_->phase != IteratorState::Phase::kOpen) throw ClosedError(env, "iterator");
    if (state_->busy) throw CodedError(env, "Busy", "iterator.next() is already in progress");
    uint64_t maxEntries = PositiveArg(info[0], "maxEntries");
    uint64_t maxBytes = PositiveArg(info[1], "maxBytes");
    return (new NextWorker(env, state_, info.This().As<Napi::Object>(), maxEntries, maxBytes))
        ->Start();
  });
}

Napi::Value IteratorWrap::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  // Once the db is closing without us, its close worker owns the teardown.
  if (!state_->core->Touchable() || state_->phase == IteratorState::Phase::kClosed) {
    deferred.Resolve(env.Undefined());
    return deferred.Promise();
  }
  state_->closeWaiters.push_back(deferred);
  if (state_->phase == IteratorState::Phase::kOpen) {
    state_->phase = IteratorState::Phase::kClosing;
    if (!state_->busy) StartClose(env, state_);
  }
  return deferred.Promise();
}

Napi::Value DbWrap::NewIterator(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  Napi::Object options = OptionsArg(info[0], "options");
  auto state = std::make_shared<IteratorState>(core_);

  if (std::optional<std::string> gte = OptionalBytes(options.Get("gte"), "gte")) {
    state->lower = std::move(*gte);
    state->lowerSlice = rocksdb::Slice(state->lower);
    state->hasLower = true;
    state->readOptions.iterate_lower_bound = &state->lowerSlice;
  }
  if (std::optional<std::string> lt = OptionalBytes(options.Get("lt"), "lt")) {
    state->upper = std::move(*lt);
    state->upperSlice = rocksdb::Slice(state->upper);
    state->readOptions.iterate_upper_bound = &state->upperSlice;
  }
  state->readOptions.fill_cache = OptBool(options, "fillCache").value_or(true);
  state->snapshot = SnapshotArg(options.Get("snapshot"), core_);
  if (state->snapshot) {
    state->snapshot->Pin();
    state->readOptions.snapshot = state->snapshot->snap;
  }

  state->it.reset(core_->db()->NewIterator(state->readOptions));
  core_->Track(state);
  return IteratorWrap::NewInstance(env, std::move(state));
}

}  // namespace shardsnap
