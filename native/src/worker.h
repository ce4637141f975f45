#pragma once

#include <napi.h>
#include <rocksdb/status.h>

#include <exception>
#include <memory>

#include "db_core.h"
#include "errors.h"

namespace shardsnap {

// Runs Run() on the libuv threadpool and settles a promise with either
// Result() or the RocksDB status as a coded error.
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, const char* name)
      : Napi::AsyncWorker(env, name), deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Start() {
    Queue();
    return deferred_.Promise();
  }

 protected:
  virtual rocksdb::Status Run() = 0;
  // JS-thread hook that runs before settling, on success and failure alike;
  // the place to unpin/unmark state that Run() needed.
  virtual void Done(Napi::Env env) {}
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }

  void Execute() final {
    try {
      status_ = Run();
    } catch (const std::exception& e) {
      status_ = rocksdb::Status::Aborted(e.what());
    }
  }

  void OnOK() final {
    Napi::Env env = Env();
    Done(env);
    if (status_.ok()) {
      deferred_.Resolve(Result(env));
    } else {
      deferred_.Reject(StatusError(env, status_).Value());
    }
  }

  rocksdb::Status status_;

 private:
  Napi::Promise::Deferred deferred_;
};

// Holding one of these keeps the owning db from being closed underneath an
// in-flight operation: close is deferred until every guard is gone.
class OpGuard {
 public:
  OpGuard(Napi::Env env, std::shared_ptr<DbCore> core) : env_(env), core_(std::move(core)) {
    core_->BeginOp();
  }
  ~OpGuard() { core_->EndOp(env_); }
  OpGuard(const OpGuard&) = delete;
  OpGuard& operator=(const OpGuard&) = delete;

  DbCore& core() const { return *core_; }
  rocksdb::DB* db() const { return core_->db(); }

 private:
  Napi::Env env_;
  std::shared_ptr<DbCore> core_;
};

// A promise-returning operation against an open db.
class DbWorker : public PromiseWorker {
 public:
  DbWorker(Napi::Env env, const char* name, std::shared_ptr<DbCore> core)
      : PromiseWorker(env, name), op_(env, std::move(core)) {}

 protected:
  rocksdb::DB* db() const { return op_.db(); }
  DbCore& core() const { return op_.core(); }

 private:
  OpGuard op_;
};

}  // namespace shardsnap
