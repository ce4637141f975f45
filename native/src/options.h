#pragma once

#include <napi.h>
#include <rocksdb/options.h>

namespace shardsnap {

struct OpenSettings {
  rocksdb::Options options;
  bool readOnly = false;
};

// Translates the JS `openDb` options bag; throws TypeError/RangeError on
// malformed values.
OpenSettings OpenSettingsFromJs(const Napi::Value& value);

// Options for standalone SST files. Table settings mirror the db defaults so
// ingested files get the same bloom filter and compression as flushed ones.
rocksdb::Options SstOptionsFromJs(const Napi::Value& value);

}  // namespace shardsnap
