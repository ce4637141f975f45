#include "sst_writer.h"

#include <rocksdb/env.h>

#include <utility>
#include <vector>

#include "addon.h"
#include "args.h"
#include "errors.h"
#include "options.h"
#include "worker.h"

namespace shardsnap {

namespace {

class SstOpenWorker : public PromiseWorker {
 public:
  SstOpenWorker(Napi::Env env, std::string path, rocksdb::Options options)
      : PromiseWorker(env, "shardsnap:sstOpen"), options_(std::move(options)) {
    state_ = std::make_shared<SstState>();
    state_->path = std::move(path);
  }

 protected:
  rocksdb::Status Run() override {
    state_->writer = std::make_unique<rocksdb::SstFileWriter>(rocksdb::EnvOptions(), options_);
    return state_->writer->Open(state_->path);
  }

  Napi::Value Result(Napi::Env env) override { return SstWriterWrap::NewInstance(env, state_); }

 private:
  rocksdb::Options options_;
  std::shared_ptr<SstState> state_;
};

// Base for workers that take exclusive use of the writer while they run.
class SstWorker : public PromiseWorker {
 public:
  SstWorker(Napi::Env env, const char* name, std::shared_ptr<SstState> state)
      : PromiseWorker(env, name), state_(std::move(state)) {
    state_->busy = true;
  }

 protected:
  void Done(Napi::Env env) override { state_->busy = false; }

  std::shared_ptr<SstState> state_;
};

// Keys and values are copied into one arena because the worker must not read
// JS-owned memory.
class PutBatchWorker : public SstWorker {
 public:
  PutBatchWorker(Napi::Env env, std::shared_ptr<SstState> state, std::string arena,
                 std::vector<size_t> lengths)
      : SstWorker(env, "shardsnap:sstPutBatch", std::move(state)),
        arena_(std::move(arena)),
        lengths_(std::move(lengths)) {}

 protected:
  rocksdb::Status Run() override {
    const char* cursor = arena_.data();
    for (size_t i = 0; i + 1 < lengths_.size(); i += 2) {
      rocksdb::Slice key(cursor, lengths_[i]);
      cursor += lengths_[i];
      rocksdb::Slice value(cursor, lengths_[i + 1]);
      cursor += lengths_[i + 1];
      rocksdb::Status status = state_->writer->Put(key, value);
      if (!status.ok()) return status;
    }
    return rocksdb::Status::OK();
  }

 private:
  std::string arena_;
  std::vector<size_t> lengths_;
};

class FinishWorker : public SstWorker {
 public:
  FinishWorker(Napi::Env env, std::shared_ptr<SstState> state)
      : SstWorker(env, "shardsnap:sstFinish", std::move(state)) {}

 protected:
  rocksdb::Status Run() override {
    rocksdb::Status status = state_->writer->Finish(&info_);
    state_->writer.reset();
    return status;
  }

  void Done(Napi::Env env) override {
    SstWorker::Done(env);
    state_->phase = status_.ok() ? SstState::Phase::kFinished : SstState::Phase::kFailed;
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object result = Napi::Object::New(env);
    result.Set("fileSize", Napi::Number::New(env, static_cast<double>(info_.file_size)));
    result.Set("entries", Napi::Number::New(env, static_cast<double>(info_.num_entries)));
    return result;
  }

 private:
  rocksdb::ExternalSstFileInfo info_;
};

class AbandonWorker : public SstWorker {
 public:
  AbandonWorker(Napi::Env env, std::shared_ptr<SstState> state)
      : SstWorker(env, "shardsnap:sstAbandon", std::move(state)) {}

 protected:
  rocksdb::Status Run() override {
    state_->writer.reset();
    rocksdb::Env* env = rocksdb::Env::Default();
    if (env->FileExists(state_->path).IsNotFound()) return rocksdb::Status::OK();
    return env->DeleteFile(state_->path);
  }

  void Done(Napi::Env env) override {
    SstWorker::Done(env);
    state_->phase = SstState::Phase::kAbandoned;
  }
};

}  // namespace

Napi::Function SstWriterWrap::Define(Napi::Env env) {
  return DefineClass(env, "SstWriter",
                     {
                         InstanceMethod<&SstWriterWrap::Put>("put"),
                         InstanceMethod<&SstWriterWrap::PutBatch>("putBatch"),
                         InstanceMethod<&SstWriterWrap::DeleteRange>("deleteRange"),
                         InstanceMethod<&SstWriterWrap::Finish>("finish"),
                         InstanceMethod<&SstWriterWrap::Abandon>("abandon"),
                     });
}

Napi::Object SstWriterWrap::NewInstance(Napi::Env env, std::shared_ptr<SstState> state) {
  return NewWrapped(env, GetAddonData(env).sstWriter, &state);
}

Napi::Value SstWriterWrap::Create(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    std::string path = StringArg(info[0], "path");
    rocksdb::Options options = SstOptionsFromJs(info[1]);
    return (new SstOpenWorker(env, std::move(path), std::move(options)))->Start();
  });
}

SstWriterWrap::SstWriterWrap(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<SstWriterWrap>(info) {
  state_ = *UnpackWrapped<std::shared_ptr<SstState>>(
      info, "SstWriter cannot be constructed directly; use createSstWriter()");
}

void SstWriterWrap::EnsureWritable(Napi::Env env) const {
  if (state_->phase != SstState::Phase::kOpen) throw ClosedError(env, "sst writer");
  if (state_->busy) throw CodedError(env, "Busy", "sst writer has an operation in progress");
}

Napi::Value SstWriterWrap::Put(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureWritable(env);
  rocksdb::Status status =
      state_->writer->Put(BytesArg(info[0], "key"), BytesArg(info[1], "value"));
  if (!status.ok()) throw StatusError(env, status);
  return env.Undefined();
}

// Range tombstones go to their own block, so they may be added in any order
// relative to point keys. Once ingested they share the file's global seqno and
// therefore never delete the file's own point keys.
Napi::Value SstWriterWrap::DeleteRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureWritable(env);
  rocksdb::Status status =
      state_->writer->DeleteRange(BytesArg(info[0], "start"), BytesArg(info[1], "end"));
  if (!status.ok()) throw StatusError(env, status);
  return env.Undefined();
}

Napi::Value SstWriterWrap::PutBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    EnsureWritable(env);
    if (!info[0].IsArray() || !info[1].IsArray()) {
      throw Napi::TypeError::New(env, "keys and values must be arrays");
    }
    Napi::Array keys = info[0].As<Napi::Array>();
    Napi::Array values = info[1].As<Napi::Array>();
    if (keys.Length() != values.Length()) {
      throw Napi::TypeError::New(env, "keys and values must have the same length");
    }
    std::string arena;
    std::vector<size_t> lengths;
    lengths.reserve(static_cast<size_t>(keys.Length()) * 2);
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      rocksdb::Slice key = BytesArg(keys.Get(i), "key");
      rocksdb::Slice value = BytesArg(values.Get(i), "value");
      arena.append(key.data(), key.size());
      arena.append(value.data(), value.size());
      lengths.push_back(key.size());
      lengths.push_back(value.size());
    }
    return (new PutBatchWorker(env, state_, std::move(arena), std::move(lengths)))->Start();
  });
}

Napi::Value SstWriterWrap::Finish(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    EnsureWritable(env);
    return (new FinishWorker(env, state_))->Start();
  });
}

Napi::Value SstWriterWrap::Abandon(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    // A finished file belongs to the caller now; abandoning twice is a no-op.
    if (state_->phase == SstState::Phase::kFinished ||
        state_->phase == SstState::Phase::kAbandoned) {
      Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
      deferred.Resolve(env.Undefined());
      return deferred.Promise();
    }
    if (state_->busy) throw CodedError(env, "Busy", "sst writer has an operation in progress");
    return (new AbandonWorker(env, state_))->Start();
  });
}

}  // namespace shardsnap
