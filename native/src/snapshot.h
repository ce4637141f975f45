#pragma once

#include <napi.h>

#include <memory>

#include "db_core.h"

namespace shardsnap {

class SnapshotWrap : public Napi::ObjectWrap<SnapshotWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::Object NewInstance(Napi::Env env, std::shared_ptr<SnapshotState> state);

  explicit SnapshotWrap(const Napi::CallbackInfo& info);
  // A forgotten snapshot would pin old versions forever; GC releases it.
  ~SnapshotWrap() override;

  const std::shared_ptr<SnapshotState>& state() const { return state_; }

 private:
  Napi::Value Sequence(const Napi::CallbackInfo& info);
  Napi::Value Released(const Napi::CallbackInfo& info);
  Napi::Value Release(const Napi::CallbackInfo& info);

  std::shared_ptr<SnapshotState> state_;
};

// Resolves an optional `snapshot` argument for an operation on `core`:
// nullptr when absent; throws when it is not a Snapshot, belongs to another
// db, or was released.
std::shared_ptr<SnapshotState> SnapshotArg(const Napi::Value& value,
                                           const std::shared_ptr<DbCore>& core);

}  // namespace shardsnap
