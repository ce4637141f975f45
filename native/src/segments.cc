// Memory for the memory store's arena: anonymous mappings handed to JavaScript as
// external Buffers that unmap when collected, pre-faulted on the libuv threadpool so that
// the event loop does not pay the first touch of a fresh segment. (Transparent huge pages
// were measured and left out: they made first touches cheaper but random reads of a
// large keyspace much slower; see docs/design/keyspace.md.)
#include <napi.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace {

constexpr size_t kMappingUnit = 2u << 20;
constexpr size_t kPage = 4096;

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

void Unmap(Napi::Env, char* data, size_t* mapped) {
  munmap(data, *mapped);
  delete mapped;
}

// allocateSegment(bytes) -> Buffer of exactly `bytes`, over a mapping rounded up to 2 MiB.
Napi::Value AllocateSegment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    throw Napi::TypeError::New(env, "allocateSegment(bytes): bytes must be a number");
  }
  double requested = info[0].As<Napi::Number>().DoubleValue();
  if (!(requested >= 1) || requested > double(1ull << 40)) {
    throw Napi::RangeError::New(env, "allocateSegment: bytes out of range");
  }
  size_t bytes = static_cast<size_t>(requested);
  size_t mapped = RoundUp(bytes, kMappingUnit);
  void* data = mmap(nullptr, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (data == MAP_FAILED) {
    Napi::Error error = Napi::Error::New(env, std::string("mmap: ") + std::strerror(errno));
    error.Set("code", Napi::String::New(env, "ENOMEM"));
    throw error;
  }
  return Napi::Buffer<char>::New(env, static_cast<char*>(data), bytes, Unmap, new size_t(mapped));
}

class Prefault : public Napi::AsyncWorker {
 public:
  Prefault(Napi::Env env, Napi::Buffer<char> buffer)
      : Napi::AsyncWorker(env, "shardsnap.prefault"),
        ref_(Napi::Persistent(buffer)),
        data_(buffer.Data()),
        length_(buffer.Length()),
        deferred_(Napi::Promise::Deferred::New(env)) {}

  Napi::Promise Start() {
    Queue();
    return deferred_.Promise();
  }

 protected:
  void Execute() override {
    // One write per page makes the kernel back it; the bytes are not meaningful yet.
    volatile char* p = data_;
    for (size_t off = 0; off < length_; off += kPage) p[off] = 0;
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }

 private:
  Napi::Reference<Napi::Buffer<char>> ref_;
  char* data_;
  size_t length_;
  Napi::Promise::Deferred deferred_;
};

// prefaultSegment(buffer) -> Promise<void>; the caller must not use the buffer before it settles.
Napi::Value PrefaultSegment(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) {
    throw Napi::TypeError::New(env, "prefaultSegment(buffer): buffer must be a Buffer");
  }
  auto* worker = new Prefault(env, info[0].As<Napi::Buffer<char>>());
  return worker->Start();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("allocateSegment", Napi::Function::New<AllocateSegment>(env, "allocateSegment"));
  exports.Set("prefaultSegment", Napi::Function::New<PrefaultSegment>(env, "prefaultSegment"));
  return exports;
}

}  // namespace

NODE_API_MODULE(shardsnap_segments, Init)
