#pragma once

#include <napi.h>

#include <memory>

#include "db_core.h"

namespace shardsnap {

// JS `Db` object. Methods are defined next to the concern they belong to:
// db.cc (lifecycle, reads, properties), batch.cc, snapshot.cc, iterator.cc,
// checkpoint.cc, maintenance.cc.
class DbWrap : public Napi::ObjectWrap<DbWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::Object NewInstance(Napi::Env env, std::shared_ptr<DbCore> core);

  // Exported as `openDb(path, options)`.
  static Napi::Value Open(const Napi::CallbackInfo& info);

  explicit DbWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value IsClosed(const Napi::CallbackInfo& info);
  Napi::Value Get(const Napi::CallbackInfo& info);
  Napi::Value MultiGet(const Napi::CallbackInfo& info);
  Napi::Value LatestSequence(const Napi::CallbackInfo& info);
  Napi::Value GetProperty(const Napi::CallbackInfo& info);
  Napi::Value GetIntProperty(const Napi::CallbackInfo& info);
  Napi::Value Write(const Napi::CallbackInfo& info);
  Napi::Value GetSnapshot(const Napi::CallbackInfo& info);
  Napi::Value NewIterator(const Napi::CallbackInfo& info);
  Napi::Value CreateCheckpoint(const Napi::CallbackInfo& info);
  Napi::Value LiveFiles(const Napi::CallbackInfo& info);
  Napi::Value Ingest(const Napi::CallbackInfo& info);
  Napi::Value Flush(const Napi::CallbackInfo& info);
  Napi::Value CompactRange(const Napi::CallbackInfo& info);

  // Throws a 'Closed' error unless the db accepts new operations.
  void EnsureOpen(Napi::Env env) const;

  std::shared_ptr<DbCore> core_;
};

}  // namespace shardsnap
