#include <rocksdb/write_batch.h>

#include <string>

#include "args.h"
#include "db.h"
#include "errors.h"
#include "worker.h"

namespace shardsnap {

namespace {

// Copies the JS ops into a WriteBatch up front: the batch owns its bytes, so
// the worker never touches JS memory.
rocksdb::Status FillBatch(const Napi::Array& ops, rocksdb::WriteBatch* batch) {
  Napi::Env env = ops.Env();
  for (uint32_t i = 0; i < ops.Length(); ++i) {
    Napi::Value entry = ops.Get(i);
    if (!entry.IsObject()) throw Napi::TypeError::New(env, "write ops must be objects");
    Napi::Object op = entry.As<Napi::Object>();
    std::string type = StringArg(op.Get("type"), "op.type");
    rocksdb::Status status;
    if (type == "put") {
      status = batch->Put(BytesArg(op.Get("key"), "op.key"), BytesArg(op.Get("value"), "op.value"));
    } else if (type == "del") {
      status = batch->Delete(BytesArg(op.Get("key"), "op.key"));
    } else if (type == "delRange") {
      status = batch->DeleteRange(BytesArg(op.Get("start"), "op.start"),
                                  BytesArg(op.Get("end"), "op.end"));
    } else {
      throw Napi::TypeError::New(env, "op.type must be 'put', 'del' or 'delRange'");
    }
    if (!status.ok()) return status;
  }
  return rocksdb::Status::OK();
}

class WriteWorker : public DbWorker {
 public:
  WriteWorker(Napi::Env env, std::shared_ptr<DbCore> core, rocksdb::WriteBatch batch, bool sync)
      : DbWorker(env, "shardsnap:write", std::move(core)), batch_(std::move(batch)) {
    options_.sync = sync;
  }

 protected:
  rocksdb::Status Run() override {
    rocksdb::Status status = db()->Write(options_, &batch_);
    sequence_ = db()->GetLatestSequenceNumber();
    return status;
  }

  Napi::Value Result(Napi::Env env) override {
    return Napi::Number::New(env, static_cast<double>(sequence_));
  }

 private:
  rocksdb::WriteBatch batch_;
  rocksdb::WriteOptions options_;
  rocksdb::SequenceNumber sequence_ = 0;
};

}  // namespace

Napi::Value DbWrap::Write(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    EnsureOpen(env);
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "ops must be an array");
    bool sync = OptBool(OptionsArg(info[1], "options"), "sync").value_or(false);
    rocksdb::WriteBatch batch;
    rocksdb::Status status = FillBatch(info[0].As<Napi::Array>(), &batch);
    if (!status.ok()) throw StatusError(env, status);
    return (new WriteWorker(env, core_, std::move(batch), sync))->Start();
  });
}

}  // namespace shardsnap
