#include "snapshot.h"

#include "addon.h"
#include "args.h"
#include "db.h"
#include "errors.h"

namespace shardsnap {

Napi::Function SnapshotWrap::Define(Napi::Env env) {
  return DefineClass(env, "Snapshot",
                     {
                         InstanceAccessor<&SnapshotWrap::Sequence>("sequence"),
                         InstanceAccessor<&SnapshotWrap::Released>("released"),
                         InstanceMethod<&SnapshotWrap::Release>("release"),
                     });
}

Napi::Object SnapshotWrap::NewInstance(Napi::Env env, std::shared_ptr<SnapshotState> state) {
  return NewWrapped(env, GetAddonData(env).snapshot, &state);
}

SnapshotWrap::SnapshotWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SnapshotWrap>(info) {
  state_ = *UnpackWrapped<std::shared_ptr<SnapshotState>>(
      info, "Snapshot cannot be constructed directly; use db.getSnapshot()");
}

SnapshotWrap::~SnapshotWrap() {
  if (state_) state_->Release();
}

Napi::Value SnapshotWrap::Sequence(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(state_->sequence));
}

Napi::Value SnapshotWrap::Released(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !state_->Usable());
}

Napi::Value SnapshotWrap::Release(const Napi::CallbackInfo& info) {
  state_->Release();
  return info.Env().Undefined();
}

std::shared_ptr<SnapshotState> SnapshotArg(const Napi::Value& value,
                                           const std::shared_ptr<DbCore>& core) {
  Napi::Env env = value.Env();
  if (IsNullish(value)) return nullptr;
  if (!value.IsObject() ||
      !value.As<Napi::Object>().InstanceOf(GetAddonData(env).snapshot.Value())) {
    throw Napi::TypeError::New(env, "snapshot must be a Snapshot");
  }
  const std::shared_ptr<SnapshotState>& state =
      SnapshotWrap::Unwrap(value.As<Napi::Object>())->state();
  if (state->core != core) {
    throw CodedError(env, "InvalidArgument", "snapshot belongs to a different database");
  }
  if (!state->Usable()) throw ClosedError(env, "snapshot");
  return state;
}

Napi::Value DbWrap::GetSnapshot(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnsureOpen(env);
  const rocksdb::Snapshot* native = core_->db()->GetSnapshot();
  if (native == nullptr) {
    throw CodedError(env, "NotSupported", "this database does not support snapshots");
  }
  auto state = std::make_shared<SnapshotState>(core_, native);
  core_->Track(state);
  return SnapshotWrap::NewInstance(env, std::move(state));
}

}  // namespace shardsnap
