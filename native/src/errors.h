#pragma once

#include <napi.h>
#include <rocksdb/status.h>

#include <string>

namespace shardsnap {

// Name used for the JS `code` property when a handle (db, snapshot,
// iterator, sst writer) is used after it was closed or released.
extern const char* const kClosedCode;

// Stable, JS-facing name for a RocksDB status code ("IOError", "NotFound"...).
const char* StatusCodeName(const rocksdb::Status& status);

Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message);
Napi::Error StatusError(Napi::Env env, const rocksdb::Status& status);
Napi::Error ClosedError(Napi::Env env, const char* what);

Napi::Promise Rejected(Napi::Env env, const Napi::Error& error);

// Runs `body` and turns any thrown JS error into a rejected promise, so async
// methods report argument and state errors the same way as I/O errors.
template <typename Body>
Napi::Value AsPromise(Napi::Env env, Body&& body) {
  try {
    return body();
  } catch (const Napi::Error& error) {
    return Rejected(env, error);
  }
}

}  // namespace shardsnap
