#include "db.h"

#include <utility>
#include <vector>

#include "addon.h"
#include "args.h"
#include "errors.h"
#include "options.h"
#include "snapshot.h"
#include "worker.h"

namespace shardsnap {

namespace {

class OpenWorker : public PromiseWorker {
 public:
  OpenWorker(Napi::Env env, std::string path, OpenSettings settings)
      : PromiseWorker(env, "shardsnap:open"), path_(std::move(path)), settings_(std::move(settings)) {}

  ~OpenWorker() override { delete db_; }

 protected:
  rocksdb::Status Run() override {
    if (settings_.readOnly) {
      return rocksdb::DB::OpenForReadOnly(settings_.options, path_, &db_);
    }
    return rocksdb::DB::Open(settings_.options, path_, &db_);
  }

  Napi::Value Result(Napi::Env env) override {
    auto core = std::make_shared<DbCore>(std::exchange(db_, nullptr));
    return DbWrap::NewInstance(env, std::move(core));
  }

 private:
  std::string path_;
  OpenSettings settings_;
  rocksdb::DB* db_ = nullptr;
};

class GetWorker : public DbWorker {
 public:
  GetWorker(Napi::Env env, std::shared_ptr<DbCore> core, std::string key,
            std::shared_ptr<SnapshotState> snapshot)
      : DbWorker(env, "shardsnap:get", std::move(core)),
        key_(std::move(key)),
        snapshot_(std::move(snapshot)) {
    if (snapshot_) snapshot_->Pin();
  }

 protected:
  rocksdb::Status Run() override {
    rocksdb::ReadOptions options;
    if (snapshot_) options.snapshot = snapshot_->snap;
    rocksdb::Status status = db()->Get(options, key_, &value_);
    found_ = status.ok();
    return status.IsNotFound() ? rocksdb::Status::OK() : status;
  }

  void Done(Napi::Env env) override {
    if (snapshot_) snapshot_->Unpin();
  }

  Napi::Value Result(Napi::Env env) override {
    if (!found_) return env.Undefined();
    return Napi::Buffer<char>::Copy(env, value_.data(), value_.size());
  }

 private:
  std::string key_;
  std::shared_ptr<SnapshotState> snapshot_;
  std::string value_;
  bool found_ = false;
};

// Reads many keys in one threadpool hop, all at one point in time (the given
// snapshot, or an implicit one taken when the read starts).
class MultiGetWorker : public DbWorker {
 public:
  MultiGetWorker(Napi::Env env, std::shared_ptr<DbCore> core, std::vector<std::string> keys,
                 std::shared_ptr<SnapshotState> snapshot)
      : DbWorker(env, "shardsnap:multiGet", std::move(core)),
        keys_(std::move(keys)),
        snapshot_(std::move(snapshot)) {
    if (snapshot_) snapshot_->Pin();
  }

 protected:
  rocksdb::Status Run() override {
    size_t n = keys_.size();
    if (n == 0) return rocksdb::Status::OK();
    rocksdb::ReadOptions options;
    if (snapshot_) options.snapshot = snapshot_->snap;
    std::vector<rocksdb::Slice> slices(keys_.begin(), keys_.end());
    values_.resize(n);
    statuses_.resize(n);
    db()->MultiGet(options, db()->DefaultColumnFamily(), n, slices.data(), values_.data(),
                   statuses_.data());
    for (const rocksdb::Status& status : statuses_) {
      if (!status.ok() && !status.IsNotFound()) return status;
    }
    return rocksdb::Status::OK();
  }

  void Done(Napi::Env env) override {
    if (snapshot_) snapshot_->Unpin();
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Array result = Napi::Array::New(env, keys_.size());
    for (size_t i = 0; i < statuses_.size(); ++i) {
      uint32_t index = static_cast<uint32_t>(i);
      if (statuses_[i].ok()) {
        result.Set(index, Napi::Buffer<char>::Copy(env, values_[i].data(), values_[i].size()));
      } else {
        result.Set(index, env.Undefined());
      }
    }
    return result;
  }

 private:
  std::vector<std::string> keys_;
  std::shared_ptr<SnapshotState> snapshot_;
  std::vector<rocksdb::PinnableSlice> values_;
  std::vector<rocksdb::Status> statuses_;
};

}  // namespace

Napi::Function DbWrap::Define(Napi::Env env) {
  return DefineClass(env, "Db",
                     {
                         InstanceMethod<&DbWrap::Close>("close"),
                         InstanceAccessor<&DbWrap::IsClosed>("closed"),
                         InstanceMethod<&DbWrap::Get>("get"),
                         InstanceMethod<&DbWrap::MultiGet>("multiGet"),
                         InstanceMethod<&DbWrap::Write>("write"),
                         InstanceMethod<&DbWrap::LatestSequence>("latestSequence"),
                         InstanceMethod<&DbWrap::GetSnapshot>("getSnapshot"),
                         InstanceMethod<&DbWrap::NewIterator>("iterator"),
                         InstanceMethod<&DbWrap::CreateCheckpoint>("createCheckpoint"),
                         InstanceMethod<&DbWrap::LiveFiles>("liveFiles"),
                         InstanceMethod<&DbWrap::Ingest>("ingest"),
                         InstanceMethod<&DbWrap::GetProperty>("getProperty"),
                         InstanceMethod<&DbWrap::GetIntProperty>("getIntProperty"),
                         InstanceMethod<&DbWrap::Flush>("flush"),
                         InstanceMethod<&DbWrap::CompactRange>("compactRange"),
                     });
}

Napi::Object DbWrap::NewInstance(Napi::Env env, std::shared_ptr<DbCore> core) {
  return NewWrapped(env, GetAddonData(env).db, &core);
}

DbWrap::DbWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DbWrap>(info) {
  core_ = *UnpackWrapped<std::shared_ptr<DbCore>>(
      info, "Db cannot be constructed directly; use openDb()");
}

void DbWrap::EnsureOpen(Napi::Env env) const {
  if (!core_->IsOpen()) throw ClosedError(env, "database");
}

Napi::Value DbWrap::Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    std::string path = StringArg(info[0], "path");
    OpenSettings settings = OpenSettingsFromJs(info[1]);
    return (new OpenWorker(env, std::move(path), std::move(settings)))->Start();
  });
}

Napi::Value DbWrap::Close(const Napi::CallbackInfo& info) { return core_->Close(info.Env()); }

Napi::Value DbWrap::IsClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !core_->IsOpen());
}

Napi::Value DbWrap::Get(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    EnsureOpen(env);
    std::string key = CopyBytesArg(info[0], "key");
    std::shared_ptr<SnapshotState> snapshot = SnapshotArg(info[1], core_);
    return (new GetWorker(env, core_, std::move(key), std::move(snapshot)))->Start();
  });
}

Napi::Value DbWrap::MultiGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    EnsureOpen(env);
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "keys must be an array");
    Napi::Array list = info[0].As<Napi::Array>();
    std::vector<std::string> keys;
    keys.reserve(list.Length());
    for (uint32_t i = 0; i < list.Length(); ++i) keys.push_back(CopyBytesArg(list.Get(i), "key"));
    std::shared_ptr<SnapshotState> snapshot = SnapshotArg(info[1], core_);
    return (new MultiGetWorker(env, core_, std::move(keys), std::move(snapshot)))->Start();
  });
}

Napi::Value DbWrap::LatestSequence(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  return Napi::Number::New(env, static_cast<double>(core_->db()->GetLatestSequenceNumber()));
}

Napi::Value DbWrap::GetProperty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  std::string name = StringArg(info[0], "name");
  std::string value;
  if (!core_->db()->GetProperty(name, &value)) return env.Undefined();
  return Napi::String::New(env, value);
}

Napi::Value DbWrap::GetIntProperty(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  std::string name = StringArg(info[0], "name");
  uint64_t value = 0;
  if (!core_->db()->GetIntProperty(name, &value)) return env.Undefined();
  return Napi::Number::New(env, static_cast<double>(value));
}

}  // namespace shardsnap
