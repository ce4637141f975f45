#pragma once

#include <napi.h>

#include <memory>

#include "db_core.h"

namespace shardsnap {

class IteratorWrap : public Napi::ObjectWrap<IteratorWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::Object NewInstance(Napi::Env env, std::shared_ptr<IteratorState> state);

  explicit IteratorWrap(const Napi::CallbackInfo& info);
  // An unclosed iterator pins memtables and SST files; GC drops it. A next()
  // in flight holds a reference to this object, so it cannot race with this.
  ~IteratorWrap() override;

 private:
  Napi::Value Next(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  std::shared_ptr<IteratorState> state_;
};

}  // namespace shardsnap
