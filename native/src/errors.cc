#include "errors.h"

namespace shardsnap {

const char* const kClosedCode = "Closed";

const char* StatusCodeName(const rocksdb::Status& status) {
  using Code = rocksdb::Status::Code;
  switch (status.code()) {
    case Code::kOk: return "OK";
    case Code::kNotFound: return "NotFound";
    case Code::kCorruption: return "Corruption";
    case Code::kNotSupported: return "NotSupported";
    case Code::kInvalidArgument: return "InvalidArgument";
    case Code::kIOError: return "IOError";
    case Code::kMergeInProgress: return "MergeInProgress";
    case Code::kIncomplete: return "Incomplete";
    case Code::kShutdownInProgress: return "ShutdownInProgress";
    case Code::kTimedOut: return "TimedOut";
    case Code::kAborted: return "Aborted";
    case Code::kBusy: return "Busy";
    case Code::kExpired: return "Expired";
    case Code::kTryAgain: return "TryAgain";
    case Code::kCompactionTooLarge: return "CompactionTooLarge";
    case Code::kColumnFamilyDropped: return "ColumnFamilyDropped";
    default: return "Unknown";
  }
}

Napi::Error CodedError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  return error;
}

Napi::Error StatusError(Napi::Env env, const rocksdb::Status& status) {
  // A full disk is an I/O error to RocksDB; callers answer it differently (no space).
  if (status.IsNoSpace()) return CodedError(env, "NoSpace", status.ToString());
  return CodedError(env, StatusCodeName(status), status.ToString());
}

Napi::Error ClosedError(Napi::Env env, const char* what) {
  return CodedError(env, kClosedCode, std::string(what) + " is closed");
}

Napi::Promise Rejected(Napi::Env env, const Napi::Error& error) {
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(error.Value());
  return deferred.Promise();
}

}  // namespace shardsnap
