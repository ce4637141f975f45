#pragma once

#include <napi.h>

namespace shardsnap {

// Per-environment constructors, so native code can create wrapper objects
// (a Db from openDb, a Snapshot from getSnapshot...) without exposing those
// constructors to JS.
struct AddonData {
  Napi::FunctionReference db;
  Napi::FunctionReference snapshot;
  Napi::FunctionReference iterator;
  Napi::FunctionReference sstWriter;
};

AddonData& GetAddonData(Napi::Env env);

// Wrapper constructors receive their native state through an External so
// that `new Db()` from JS is rejected instead of producing a hollow object.
template <typename T>
Napi::Object NewWrapped(Napi::Env env, Napi::FunctionReference& ctor, T* state) {
  return ctor.New({Napi::External<T>::New(env, state)});
}

template <typename T>
T* UnpackWrapped(const Napi::CallbackInfo& info, const char* hint) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(info.Env(), hint);
  }
  return info[0].As<Napi::External<T>>().Data();
}

}  // namespace shardsnap
