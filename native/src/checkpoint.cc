#include <rocksdb/utilities/checkpoint.h>

#include <memory>
#include <string>

#include "args.h"
#include "db.h"
#include "worker.h"

namespace shardsnap {

namespace {

class CheckpointWorker : public DbWorker {
 public:
  CheckpointWorker(Napi::Env env, std::shared_ptr<DbCore> core, std::string dir,
                   uint64_t logSizeForFlush)
      : DbWorker(env, "shardsnap:checkpoint", std::move(core)),
        dir_(std::move(dir)),
        logSizeForFlush_(logSizeForFlush) {}

 protected:
  rocksdb::Status Run() override {
    rocksdb::Checkpoint* raw = nullptr;
    rocksdb::Status status = rocksdb::Checkpoint::Create(db(), &raw);
    std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
    if (!status.ok()) return status;
    return checkpoint->CreateCheckpoint(dir_, logSizeForFlush_, &sequence_);
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object result = Napi::Object::New(env);
    result.Set("sequence", Napi::Number::New(env, static_cast<double>(sequence_)));
    return result;
  }

 private:
  std::string dir_;
  uint64_t logSizeForFlush_;
  uint64_t sequence_ = 0;
};

}  // namespace

Napi::Value DbWrap::CreateCheckpoint(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    EnsureOpen(env);
    std::string dir = StringArg(info[0], "dir");
    uint64_t logSizeForFlush = OptionalUint(info[1], "logSizeForFlush").value_or(0);
    return (new CheckpointWorker(env, core_, std::move(dir), logSizeForFlush))->Start();
  });
}

}  // namespace shardsnap
