#include "options.h"

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/statistics.h>
#include <rocksdb/table.h>

#include "args.h"

namespace shardsnap {

namespace {

constexpr double kDefaultBloomBitsPerKey = 10.0;

void ApplyCompression(const Napi::Object& js, rocksdb::Options* options) {
  std::optional<std::string> name = OptString(js, "compression");
  if (!name) return;
  if (*name == "none") {
    options->compression = rocksdb::kNoCompression;
  } else if (*name == "snappy") {
    options->compression = rocksdb::kSnappyCompression;
  } else if (*name == "lz4") {
    options->compression = rocksdb::kLZ4Compression;
  } else if (*name == "zstd") {
    options->compression = rocksdb::kZSTD;
  } else {
    throw Napi::TypeError::New(js.Env(), "compression must be one of none, snappy, lz4, zstd");
  }
}

void ApplyTableOptions(const Napi::Object& js, rocksdb::Options* options) {
  rocksdb::BlockBasedTableOptions table;
  if (std::optional<uint64_t> cacheSize = OptUint(js, "blockCacheSize")) {
    table.block_cache = rocksdb::NewLRUCache(static_cast<size_t>(*cacheSize));
  }
  double bitsPerKey = OptNumber(js, "bloomBitsPerKey").value_or(kDefaultBloomBitsPerKey);
  if (bitsPerKey < 0) throw Napi::RangeError::New(js.Env(), "bloomBitsPerKey must be >= 0");
  if (bitsPerKey > 0) {
    table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(bitsPerKey));
  }
  options->table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
}

}  // namespace

OpenSettings OpenSettingsFromJs(const Napi::Value& value) {
  Napi::Object js = OptionsArg(value, "options");
  OpenSettings settings;
  rocksdb::Options& options = settings.options;

  options.create_if_missing = OptBool(js, "createIfMissing").value_or(true);
  options.error_if_exists = OptBool(js, "errorIfExists").value_or(false);
  settings.readOnly = OptBool(js, "readOnly").value_or(false);

  if (auto v = OptUint(js, "writeBufferSize")) options.write_buffer_size = *v;
  if (auto v = OptUint(js, "maxWriteBufferNumber")) {
    options.max_write_buffer_number = static_cast<int>(*v);
  }
  if (auto v = OptUint(js, "targetFileSizeBase")) options.target_file_size_base = *v;
  if (auto v = OptUint(js, "maxBackgroundJobs")) {
    options.max_background_jobs = static_cast<int>(*v);
  }
  if (OptBool(js, "statistics").value_or(false)) {
    options.statistics = rocksdb::CreateDBStatistics();
  }
  ApplyCompression(js, &options);
  ApplyTableOptions(js, &options);

  // Iterators and snapshots may be dropped from a GC finalizer on the JS
  // thread; this moves the obsolete-file purge that such a drop can trigger
  // onto RocksDB's background threads.
  options.avoid_unnecessary_blocking_io = true;
  return settings;
}

rocksdb::Options SstOptionsFromJs(const Napi::Value& value) {
  Napi::Object js = OptionsArg(value, "options");
  rocksdb::Options options;
  ApplyCompression(js, &options);
  ApplyTableOptions(js, &options);
  return options;
}

}  // namespace shardsnap
