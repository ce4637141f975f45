#pragma once

#include <napi.h>
#include <rocksdb/sst_file_writer.h>

#include <memory>
#include <string>

namespace shardsnap {

struct SstState {
  enum class Phase { kOpen, kFinished, kFailed, kAbandoned };

  std::unique_ptr<rocksdb::SstFileWriter> writer;
  std::string path;
  Phase phase = Phase::kOpen;
  // Set while a worker owns `writer`; the JS thread must not touch it then.
  bool busy = false;
};

class SstWriterWrap : public Napi::ObjectWrap<SstWriterWrap> {
 public:
  static Napi::Function Define(Napi::Env env);
  static Napi::Object NewInstance(Napi::Env env, std::shared_ptr<SstState> state);

  // Exported as `createSstWriter(path, options)`.
  static Napi::Value Create(const Napi::CallbackInfo& info);

  explicit SstWriterWrap(const Napi::CallbackInfo& info);

 private:
  Napi::Value Put(const Napi::CallbackInfo& info);
  Napi::Value PutBatch(const Napi::CallbackInfo& info);
  Napi::Value DeleteRange(const Napi::CallbackInfo& info);
  Napi::Value Finish(const Napi::CallbackInfo& info);
  Napi::Value Abandon(const Napi::CallbackInfo& info);

  // Throws unless the writer accepts entries right now.
  void EnsureWritable(Napi::Env env) const;

  std::shared_ptr<SstState> state_;
};

}  // namespace shardsnap
