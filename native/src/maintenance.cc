#include <rocksdb/metadata.h>
#include <rocksdb/options.h>

#include <optional>
#include <string>
#include <vector>

#include "args.h"
#include "db.h"
#include "worker.h"

namespace shardsnap {

namespace {

class FlushWorker : public DbWorker {
 public:
  FlushWorker(Napi::Env env, std::shared_ptr<DbCore> core)
      : DbWorker(env, "shardsnap:flush", std::move(core)) {}

 protected:
  rocksdb::Status Run() override { return db()->Flush(rocksdb::FlushOptions()); }
};

class CompactWorker : public DbWorker {
 public:
  CompactWorker(Napi::Env env, std::shared_ptr<DbCore> core, std::optional<std::string> start,
                std::optional<std::string> end)
      : DbWorker(env, "shardsnap:compactRange", std::move(core)),
        start_(std::move(start)),
        end_(std::move(end)) {}

 protected:
  rocksdb::Status Run() override {
    rocksdb::Slice start = start_ ? rocksdb::Slice(*start_) : rocksdb::Slice();
    rocksdb::Slice end = end_ ? rocksdb::Slice(*end_) : rocksdb::Slice();
    return db()->CompactRange(rocksdb::CompactRangeOptions(), start_ ? &start : nullptr,
                              end_ ? &end : nullptr);
  }

 private:
  std::optional<std::string> start_;
  std::optional<std::string> end_;
};

class LiveFilesWorker : public DbWorker {
 public:
  LiveFilesWorker(Napi::Env env, std::shared_ptr<DbCore> core)
      : DbWorker(env, "shardsnap:liveFiles", std::move(core)) {}

 protected:
  rocksdb::Status Run() override {
    db()->GetLiveFilesMetaData(&files_);
    return rocksdb::Status::OK();
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Array result = Napi::Array::New(env, files_.size());
    for (size_t i = 0; i < files_.size(); ++i) {
      const rocksdb::LiveFileMetaData& file = files_[i];
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("name", file.relative_filename);
      entry.Set("directory", file.directory);
      entry.Set("size", static_cast<double>(file.size));
      entry.Set("level", file.level);
      entry.Set("smallestKey",
                Napi::Buffer<char>::Copy(env, file.smallestkey.data(), file.smallestkey.size()));
      entry.Set("largestKey",
                Napi::Buffer<char>::Copy(env, file.largestkey.data(), file.largestkey.size()));
      entry.Set("smallestSeq", static_cast<double>(file.smallest_seqno));
      entry.Set("largestSeq", static_cast<double>(file.largest_seqno));
      result.Set(static_cast<uint32_t>(i), entry);
    }
    return result;
  }

 private:
  std::vector<rocksdb::LiveFileMetaData> files_;
};

class IngestWorker : public DbWorker {
 public:
  IngestWorker(Napi::Env env, std::shared_ptr<DbCore> core, std::vector<std::string> files,
               rocksdb::IngestExternalFileOptions options)
      : DbWorker(env, "shardsnap:ingest", std::move(core)),
        files_(std::move(files)),
        options_(options) {}

 protected:
  rocksdb::Status Run() override { return db()->IngestExternalFile(files_, options_); }

 private:
  std::vector<std::string> files_;
  rocksdb::IngestExternalFileOptions options_;
};

}  // namespace

Napi::Value DbWrap::Flush(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    EnsureOpen(env);
    return (new FlushWorker(env, core_))->Start();
  });
}

Napi::Value DbWrap::CompactRange(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    EnsureOpen(env);
    std::optional<std::string> start = OptionalBytes(info[0], "start");
    std::optional<std::string> end = OptionalBytes(info[1], "end");
    return (new CompactWorker(env, core_, std::move(start), std::move(end)))->Start();
  });
}

Napi::Value DbWrap::LiveFiles(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    EnsureOpen(env);
    return (new LiveFilesWorker(env, core_))->Start();
  });
}

Napi::Value DbWrap::Ingest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return AsPromise(env, [&]() -> Napi::Value {
    EnsureOpen(env);
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "files must be an array of paths");
    Napi::Array list = info[0].As<Napi::Array>();
    std::vector<std::string> files;
    files.reserve(list.Length());
    for (uint32_t i = 0; i < list.Length(); ++i) files.push_back(StringArg(list.Get(i), "file"));

    Napi::Object js = OptionsArg(info[1], "options");
    rocksdb::IngestExternalFileOptions options;
    options.move_files = OptBool(js, "moveFiles").value_or(options.move_files);
    options.snapshot_consistency =
        OptBool(js, "snapshotConsistency").value_or(options.snapshot_consistency);
    options.allow_global_seqno = OptBool(js, "allowGlobalSeqNo").value_or(options.allow_global_seqno);
    return (new IngestWorker(env, core_, std::move(files), options))->Start();
  });
}

}  // namespace shardsnap
