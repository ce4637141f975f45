#include "args.h"

#include <cmath>

namespace shardsnap {

namespace {

[[noreturn]] void ThrowType(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

}  // namespace

bool IsNullish(const Napi::Value& value) {
  return value.IsUndefined() || value.IsNull();
}

rocksdb::Slice BytesArg(const Napi::Value& value, const char* name) {
  if (value.IsTypedArray()) {
    Napi::TypedArray array = value.As<Napi::TypedArray>();
    if (array.TypedArrayType() == napi_uint8_array) {
      Napi::Uint8Array bytes = array.As<Napi::Uint8Array>();
      return rocksdb::Slice(reinterpret_cast<const char*>(bytes.Data()), bytes.ByteLength());
    }
  }
  ThrowType(value.Env(), std::string(name) + " must be a Buffer or Uint8Array");
}

std::string CopyBytesArg(const Napi::Value& value, const char* name) {
  return BytesArg(value, name).ToString();
}

std::optional<std::string> OptionalBytes(const Napi::Value& value, const char* name) {
  if (IsNullish(value)) return std::nullopt;
  return CopyBytesArg(value, name);
}

std::string StringArg(const Napi::Value& value, const char* name) {
  if (!value.IsString()) ThrowType(value.Env(), std::string(name) + " must be a string");
  return value.As<Napi::String>().Utf8Value();
}

Napi::Object OptionsArg(const Napi::Value& value, const char* name) {
  if (IsNullish(value)) return Napi::Object::New(value.Env());
  if (!value.IsObject()) ThrowType(value.Env(), std::string(name) + " must be an object");
  return value.As<Napi::Object>();
}

std::optional<bool> OptBool(const Napi::Object& options, const char* key) {
  Napi::Value value = options.Get(key);
  if (IsNullish(value)) return std::nullopt;
  if (!value.IsBoolean()) ThrowType(options.Env(), std::string(key) + " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

namespace {

std::optional<double> OptionalNumber(const Napi::Value& value, const char* name) {
  if (IsNullish(value)) return std::nullopt;
  if (!value.IsNumber()) ThrowType(value.Env(), std::string(name) + " must be a number");
  double number = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(number)) ThrowType(value.Env(), std::string(name) + " must be finite");
  return number;
}

}  // namespace

std::optional<uint64_t> OptionalUint(const Napi::Value& value, const char* name) {
  std::optional<double> number = OptionalNumber(value, name);
  if (!number) return std::nullopt;
  // 2^53 is the largest integer a JS number represents exactly.
  if (*number < 0 || *number != std::floor(*number) || *number > 9007199254740992.0) {
    throw Napi::RangeError::New(value.Env(), std::string(name) + " must be a non-negative integer");
  }
  return static_cast<uint64_t>(*number);
}

std::optional<double> OptNumber(const Napi::Object& options, const char* key) {
  return OptionalNumber(options.Get(key), key);
}

std::optional<uint64_t> OptUint(const Napi::Object& options, const char* key) {
  return OptionalUint(options.Get(key), key);
}

std::optional<std::string> OptString(const Napi::Object& options, const char* key) {
  Napi::Value value = options.Get(key);
  if (IsNullish(value)) return std::nullopt;
  return StringArg(value, key);
}

}  // namespace shardsnap
