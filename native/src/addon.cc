#include <napi.h>
#include <rocksdb/convenience.h>

#include "addon.h"
#include "db.h"
#include "iterator.h"
#include "snapshot.h"
#include "sst_writer.h"

namespace shardsnap {

AddonData& GetAddonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

namespace {

Napi::Value SupportedCompressions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array result = Napi::Array::New(env);
  uint32_t index = 0;
  result.Set(index++, "none");
  for (rocksdb::CompressionType type : rocksdb::GetSupportedCompressions()) {
    const char* name = nullptr;
    switch (type) {
      case rocksdb::kSnappyCompression: name = "snappy"; break;
      case rocksdb::kLZ4Compression: name = "lz4"; break;
      case rocksdb::kZSTD: name = "zstd"; break;
      default: break;
    }
    if (name != nullptr) result.Set(index++, name);
  }
  return result;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);
  data->db = Napi::Persistent(DbWrap::Define(env));
  data->snapshot = Napi::Persistent(SnapshotWrap::Define(env));
  data->iterator = Napi::Persistent(IteratorWrap::Define(env));
  data->sstWriter = Napi::Persistent(SstWriterWrap::Define(env));

  exports.Set("openDb", Napi::Function::New<DbWrap::Open>(env, "openDb"));
  exports.Set("createSstWriter", Napi::Function::New<SstWriterWrap::Create>(env, "createSstWriter"));
  exports.Set("supportedCompressions",
              Napi::Function::New<SupportedCompressions>(env, "supportedCompressions"));
  return exports;
}

}  // namespace shardsnap

namespace {

Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return shardsnap::Init(env, exports);
}

}  // namespace

NODE_API_MODULE(shardsnap_rocksdb, InitModule)
