// The Cerbos side of the benchmark, on Cerbos' own published client packages (@cerbos/api's
// generated messages and @cerbos/grpc), so that no Cerbos protocol file lives in this repository.
//
//   node cerbos.mjs encode IN.jsonl OUT.frames
//       CheckResources requests in their JSON form (one a line, from `rolegate-loadgen
//       cerbos-requests`) -> concatenated gRPC frames (flag byte, big-endian length, message),
//       the input of `rolegate-loadgen run --cerbos-bodies`; also writes OUT.frames.first, the
//       first frame alone, for h2load.
//   node cerbos.mjs verify ADDR SAMPLE.jsonl
//       Asks Cerbos every sampled request (from `rolegate-loadgen sample`) and compares each
//       allow/deny with rolegate's; prints every mismatch and exits 1 on any.
import { readFileSync, writeFileSync } from "node:fs";
import { fromJson, toBinary } from "@bufbuild/protobuf";
import { CheckResourcesRequestSchema } from "@cerbos/api/cerbos/request/v1/request_pb";
import { Effect } from "@cerbos/core";
import { GRPC } from "@cerbos/grpc";

const readLines = (path) =>
  readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l));

function frame(message) {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt8(0, 0);
  out.writeUInt32BE(message.length, 1);
  Buffer.from(message).copy(out, 5);
  return out;
}

function encode(input, output) {
  const frames = readLines(input).map((json, i) => {
    const request = fromJson(CheckResourcesRequestSchema, { requestId: `bench-${i}`, ...json });
    return frame(toBinary(CheckResourcesRequestSchema, request));
  });
  writeFileSync(output, Buffer.concat(frames));
  writeFileSync(`${output}.first`, frames[0]);
  console.error(`cerbos: encoded ${frames.length} CheckResources requests into ${output}`);
}

async function verify(addr, samplePath) {
  const client = new GRPC(addr, { tls: false });
  const sample = readLines(samplePath);
  let decisions = 0;
  let allowed = 0;
  const mismatches = [];
  for (const { request, expect, rolegate } of sample) {
    const response = await client.checkResources({
      principal: request.principal,
      resources: request.resources.map(({ resource, actions }) => ({ resource, actions })),
    });
    request.resources.forEach(({ resource, actions: [action] }, i) => {
      const result = response.results[i];
      const got = result?.resource.id === resource.id && result.actions[action] === Effect.ALLOW;
      decisions += 1;
      allowed += got ? 1 : 0;
      if (got !== expect[i]) {
        mismatches.push({ principal: request.principal, action, resource, cerbos: got, rolegate: rolegate[i] });
      }
    });
  }
  client.close();
  for (const m of mismatches) {
    console.error(`cerbos: MISMATCH ${JSON.stringify(m)}`);
  }
  const share = Math.round((100 * allowed) / Math.max(decisions, 1));
  if (mismatches.length > 0) {
    console.error(`cerbos: ${mismatches.length} of ${decisions} decisions differ from rolegate's`);
    process.exit(1);
  }
  console.error(`cerbos: all ${decisions} sampled decisions agree with rolegate's (${share}% allowed)`);
}

const [command, ...args] = process.argv.slice(2);
if (command === "encode" && args.length === 2) {
  encode(...args);
} else if (command === "verify" && args.length === 2) {
  await verify(...args);
} else {
  console.error("usage: node cerbos.mjs encode IN.jsonl OUT.frames | verify ADDR SAMPLE.jsonl");
  process.exit(2);
}
