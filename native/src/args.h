#pragma once

#include <napi.h>
#include <rocksdb/slice.h>

#include <cstdint>
#include <optional>
#include <string>

namespace shardsnap {

// Views the bytes of a Buffer/Uint8Array. The slice borrows JS memory, so it
// is only valid until control returns to JS; copy before handing it to a
// worker thread.
rocksdb::Slice BytesArg(const Napi::Value& value, const char* name);
std::string CopyBytesArg(const Napi::Value& value, const char* name);
std::optional<std::string> OptionalBytes(const Napi::Value& value, const char* name);

std::string StringArg(const Napi::Value& value, const char* name);
// Non-negative integer no larger than 2^53; undefined/null yield nullopt.
std::optional<uint64_t> OptionalUint(const Napi::Value& value, const char* name);

// Option readers: undefined/null mean "not set", any other wrong type throws
// a TypeError so typos in option values surface immediately.
Napi::Object OptionsArg(const Napi::Value& value, const char* name);
std::optional<bool> OptBool(const Napi::Object& options, const char* key);
std::optional<uint64_t> OptUint(const Napi::Object& options, const char* key);
std::optional<double> OptNumber(const Napi::Object& options, const char* key);
std::optional<std::string> OptString(const Napi::Object& options, const char* key);

bool IsNullish(const Napi::Value& value);

}  // namespace shardsnap
