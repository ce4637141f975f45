"""A shardsnap client in another language, acting on typed errors alone.

It compiles the node's .proto files (shardsnap and google.rpc) at run time and writes one
key. When the node refuses, the client decides what to do from the google.rpc.Status in
the `grpc-status-details-bin` trailer only, never from the message text:

  MOVED     retry at ErrorInfo.metadata["address"]
  TRYAGAIN  wait RetryInfo.retry_delay, then retry at the same node
  other     report the reason and its metadata, and stop

Every step is printed as one JSON line on stdout, for the tests to check.

usage: python_client.py --address HOST:PORT --key KEY --value VALUE [--op set|hset]
                        [--max-attempts N] [--deadline-s S]
"""

import argparse
import importlib
import json
import os
import sys
import tempfile
import time

import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_ROOT = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
PROTOS = [
    "shardsnap/v1/shardsnap.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
]
STATUS_DETAILS = "grpc-status-details-bin"


def compile_protos(out_dir):
    """Generates the Python modules of the protos into out_dir and imports them."""
    well_known = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    args = [
        "grpc_tools.protoc",
        "-I" + PROTO_ROOT,
        "-I" + well_known,
        "--python_out=" + out_dir,
        "--grpc_python_out=" + out_dir,
    ] + PROTOS
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    sys.path.insert(0, out_dir)
    return {
        "pb": importlib.import_module("shardsnap.v1.shardsnap_pb2"),
        "grpc": importlib.import_module("shardsnap.v1.shardsnap_pb2_grpc"),
        "status": importlib.import_module("google.rpc.status_pb2"),
        "details": importlib.import_module("google.rpc.error_details_pb2"),
    }


def typed_error(modules, error):
    """ErrorInfo and RetryInfo of a failed call, from its trailer (None when absent)."""
    raw = None
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS:
            raw = value
    if raw is None:
        return None, None
    status = modules["status"].Status()
    status.ParseFromString(raw)
    info, retry = None, None
    for detail in status.details:
        if info is None and detail.Is(modules["details"].ErrorInfo.DESCRIPTOR):
            info = modules["details"].ErrorInfo()
            detail.Unpack(info)
        elif retry is None and detail.Is(modules["details"].RetryInfo.DESCRIPTOR):
            retry = modules["details"].RetryInfo()
            detail.Unpack(retry)
    return info, retry


def emit(event, **fields):
    print(json.dumps(dict(event=event, **fields)), flush=True)


def mutation(modules, op, key, value):
    pb = modules["pb"]
    if op == "hset":
        fields = [pb.FieldValue(field=b"f", value=value)]
        return pb.Mutation(hset=pb.HSetOp(key=key, fields=fields))
    return pb.Mutation(set=pb.SetOp(key=key, value=value))


def write(modules, args):
    request = modules["pb"].WriteRequest(
        mutations=[mutation(modules, args.op, args.key.encode(), args.value.encode())]
    )
    channels = {}
    try:
        return write_at(modules, args, request, args.address, channels)
    finally:
        for channel in channels.values():
            channel.close()


def write_at(modules, args, request, address, channels):
    for attempt in range(1, args.max_attempts + 1):
        if address not in channels:
            channels[address] = grpc.insecure_channel(address)
        stub = modules["grpc"].ShardStub(channels[address])
        try:
            response = stub.Write(request, timeout=args.deadline_s)
        except grpc.RpcError as error:
            info, retry = typed_error(modules, error)
            if info is None:
                emit("failed", attempt=attempt, address=address, status=error.code().name)
                return 2
            delay_ms = None
            if retry is not None:
                delay = retry.retry_delay
                delay_ms = delay.seconds * 1000 + delay.nanos / 1e6
            emit(
                "refused",
                attempt=attempt,
                address=address,
                status=error.code().name,
                reason=info.reason,
                domain=info.domain,
                metadata=dict(info.metadata),
                retry_delay_ms=delay_ms,
            )
            if info.reason == "MOVED":
                address = info.metadata["address"]
                emit("redirect", to=address, slot=int(info.metadata["slot"]))
                continue
            if info.reason == "TRYAGAIN" and delay_ms is not None:
                time.sleep(delay_ms / 1000)
                continue
            emit("gave_up", reason=info.reason)
            return 1
        emit("ok", attempt=attempt, address=address, seq=response.seq)
        return 0
    emit("gave_up", reason="too many attempts")
    return 3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--value", default="v")
    parser.add_argument("--op", choices=["set", "hset"], default="set")
    parser.add_argument("--max-attempts", type=int, default=1000)
    parser.add_argument("--deadline-s", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shardsnap-py-") as out_dir:
        modules = compile_protos(out_dir)
        return write(modules, args)


if __name__ == "__main__":
    sys.exit(main())
