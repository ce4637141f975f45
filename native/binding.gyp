{
  "targets": [
    {
      "target_name": "shardsnap_rocksdb",
      "sources": [
        "src/addon.cc",
        "src/args.cc",
        "src/batch.cc",
        "src/checkpoint.cc",
        "src/db.cc",
        "src/db_core.cc",
        "src/errors.cc",
        "src/iterator.cc",
        "src/maintenance.cc",
        "src/options.cc",
        "src/snapshot.cc",
        "src/sst_writer.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc!": ["-std=gnu++17", "-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags!": ["-fno-exceptions"],
      "libraries": ["-lrocksdb"]
    },
    {
      "target_name": "shardsnap_segments",
      "sources": ["src/segments.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags_cc!": ["-std=gnu++17", "-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags!": ["-fno-exceptions"]
    }
  ]
}
