"""One real grpcio client against a running rolegate, with default channel options.

    python check.py TARGET PROTO_OUT   # TARGET: 127.0.0.1:PORT or unix:/path/to.sock

Calls Check, CheckBatch, grpc.health.v1.Health/Check and server reflection (a listing like
`grpcurl list` / `grpcurl describe`), and exits non-zero with a message naming the client, the
target and the call that failed.
"""

import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from google.protobuf.descriptor_pool import DescriptorPool

target, gen = sys.argv[1], sys.argv[2]
sys.path.insert(0, gen)
from rolegate.v1 import authorizer_pb2 as pb, authorizer_pb2_grpc as rpc  # noqa: E402

NAME = f"python grpcio {grpc.__version__} on {target}"


def expect(what, ok, got):
    if not ok:
        sys.exit(f"FAIL [{NAME}] {what}: got {got!r}")
    print(f"ok   [{NAME}] {what}")


def call(what, fn):
    try:
        return fn()
    except grpc.RpcError as e:
        sys.exit(f"FAIL [{NAME}] {what}: {e.code().name}: {e.details()}")


def resource(assignee):
    return pb.Resource(
        kind="conversation", id="c-1", unit="presales", attrs={"assignee": pb.AttrValue(text=assignee)}
    )


# Default options: no grpc.default_authority, nothing a new user would not write.
with grpc.insecure_channel(target) as channel:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ["", "rolegate.v1.Authorizer"]:
        status = call(f"health {service!r}", lambda: health.Check(health_pb2.HealthCheckRequest(service=service)))
        expect(f"health {service!r} is SERVING", status.status == health_pb2.HealthCheckResponse.SERVING, status)

    stub = rpc.AuthorizerStub(channel)
    ask = dict(tenant="meiqia-service-desk", action="conversation.reply", resource=resource("chen.yu"))
    yes = call("Check", lambda: stub.Check(pb.CheckRequest(principal="chen.yu", **ask)))
    expect("Check allows chen.yu", yes.decision.allowed and yes.decision.reason == pb.GRANTED, yes)
    expect("Check reports a revision", yes.revision > 0, yes.revision)
    no = call("Check", lambda: stub.Check(pb.CheckRequest(principal="nobody.here", **ask)))
    expect("Check denies an unknown member", not no.decision.allowed and no.decision.reason == pb.UNKNOWN_PRINCIPAL, no)
    try:
        stub.Check(pb.CheckRequest(principal="chen.yu", **{**ask, "action": "conversation.replay"}))
        expect("Check rejects an unknown action", False, "an answer")
    except grpc.RpcError as e:
        ok = e.code() == grpc.StatusCode.INVALID_ARGUMENT and "action" in e.details()
        expect("Check rejects an unknown action with INVALID_ARGUMENT naming the field", ok, (e.code(), e.details()))

    batch = call(
        "CheckBatch",
        lambda: stub.CheckBatch(
            pb.CheckBatchRequest(
                tenant="meiqia-service-desk",
                principal="chen.yu",
                items=[
                    pb.BatchItem(action="conversation.reply", resource=resource("chen.yu")),
                    pb.BatchItem(action="conversation.reply", resource=resource("someone.else")),
                ],
            )
        ),
    )
    expect("CheckBatch answers both items", len(batch.decisions) == 2, batch)
    expect("CheckBatch item 0 agrees with Check", batch.decisions[0].allowed == yes.decision.allowed, batch)
    expect("CheckBatch reports the revision", batch.revision == yes.revision, batch.revision)

    # grpcurl-equivalent: list services, then resolve each one's methods through reflection.
    db = ProtoReflectionDescriptorDatabase(channel)
    services = call("reflection list", lambda: sorted(db.get_services()))
    want = ["grpc.health.v1.Health", "rolegate.v1.Authorizer"]
    expect("reflection lists the services", all(s in services for s in want), services)
    pool = DescriptorPool(db)
    for s in services:
        desc = call(f"reflection describe {s}", lambda: pool.FindServiceByName(s))
        methods = [f"{s}.{m.name}" for m in desc.methods]
        print("     " + "\n     ".join(methods))
    check = call("reflection describe", lambda: pool.FindMethodByName("rolegate.v1.Authorizer.Check"))
    expect("reflection describes Check", check.input_type.full_name == "rolegate.v1.CheckRequest", check.input_type.full_name)
