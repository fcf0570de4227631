// One real @grpc/grpc-js client against a running rolegate, with default channel options.
//
//   node check.js TARGET REPO_ROOT   # TARGET: 127.0.0.1:PORT or unix:/path/to.sock
//
// Calls Check, CheckBatch, grpc.health.v1.Health/Check and server reflection (a listing like
// `grpcurl list` / `grpcurl describe`), and exits non-zero with a message naming the client, the
// target and the call that failed.
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const [target, root] = process.argv.slice(2);
const NAME = `node @grpc/grpc-js ${require('@grpc/grpc-js/package.json').version} on ${target}`;
const opts = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };

function load(file, dirs) {
  return grpc.loadPackageDefinition(loader.loadSync(file, { ...opts, includeDirs: dirs }));
}
const api = load('rolegate/v1/authorizer.proto', [path.join(root, 'proto')]).rolegate.v1;
const std = path.join(root, 'tests/clients/proto');
const health = load('health.proto', [std]).grpc.health.v1;
const reflection = load('reflection.proto', [std]).grpc.reflection.v1;

function fail(what, got) {
  console.error(`FAIL [${NAME}] ${what}: ${typeof got === 'string' ? got : JSON.stringify(got)}`);
  process.exit(1);
}
function expect(what, ok, got) {
  if (!ok) fail(what, got);
  console.log(`ok   [${NAME}] ${what}`);
}
function unary(client, method, req, what) {
  return new Promise((resolve) =>
    client[method](req, (err, res) => (err ? fail(what, `${grpc.status[err.code]}: ${err.details}`) : resolve(res))));
}
function rejected(client, method, req) {
  return new Promise((resolve) => client[method](req, (err, res) => resolve(err || res)));
}

// One reflection stream: each request answered in order.
function reflect(client, requests) {
  return new Promise((resolve) => {
    const call = client.ServerReflectionInfo();
    const out = [];
    call.on('data', (r) => {
      out.push(r);
      if (out.length === requests.length) call.end();
    });
    call.on('error', (e) => fail('reflection', `${grpc.status[e.code]}: ${e.details}`));
    call.on('end', () => resolve(out));
    requests.forEach((r) => call.write(r));
  });
}

// A FileDescriptorSet is `repeated FileDescriptorProto file = 1`: field 1, length-delimited.
function descriptorSet(files) {
  const parts = [];
  for (const f of files) {
    const len = [];
    let n = f.length;
    do {
      len.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
      n >>>= 7;
    } while (n > 0);
    parts.push(Buffer.from([0x0a, ...len]), Buffer.from(f));
  }
  return Buffer.concat(parts);
}

// The name (field 1) and imports (field 3) of a serialized FileDescriptorProto.
function fileInfo(buf) {
  const out = { name: '', deps: [] };
  let i = 0;
  const varint = () => {
    let n = 0;
    for (let shift = 0; ; shift += 7) {
      const b = buf[i++];
      n += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return n;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const [field, wire] = [Math.floor(key / 8), key % 8];
    if (wire === 0) varint();
    else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else if (wire === 2) {
      const len = varint();
      const text = Buffer.from(buf.subarray(i, i + len)).toString('utf8');
      if (field === 1) out.name = text;
      if (field === 3) out.deps.push(text);
      i += len;
    } else fail('reflection describe', `unexpected wire type ${wire} in a file descriptor`);
  }
  return out;
}

const resource = (assignee) => ({ kind: 'conversation', id: 'c-1', unit: 'presales', attrs: { assignee: { text: assignee } } });

async function main() {
  const creds = grpc.credentials.createInsecure();
  const h = new health.Health(target, creds);
  for (const service of ['', 'rolegate.v1.Authorizer']) {
    const s = await unary(h, 'Check', { service }, `health '${service}'`);
    expect(`health '${service}' is SERVING`, s.status === 'SERVING', s);
  }

  const a = new api.Authorizer(target, creds);
  const ask = { tenant: 'meiqia-service-desk', action: 'conversation.reply', resource: resource('chen.yu') };
  const yes = await unary(a, 'Check', { principal: 'chen.yu', ...ask }, 'Check');
  expect('Check allows chen.yu', yes.decision.allowed && yes.decision.reason === 'GRANTED', yes);
  expect('Check reports a revision', yes.revision > 0, yes.revision);
  const no = await unary(a, 'Check', { principal: 'nobody.here', ...ask }, 'Check');
  expect('Check denies an unknown member', !no.decision.allowed && no.decision.reason === 'UNKNOWN_PRINCIPAL', no);
  const bad = await rejected(a, 'Check', { ...ask, principal: 'chen.yu', action: 'conversation.replay' });
  expect('Check rejects an unknown action with INVALID_ARGUMENT naming the field',
    bad.code === grpc.status.INVALID_ARGUMENT && /action/.test(bad.details), bad);

  const batch = await unary(a, 'CheckBatch', {
    tenant: 'meiqia-service-desk',
    principal: 'chen.yu',
    items: [
      { action: 'conversation.reply', resource: resource('chen.yu') },
      { action: 'conversation.reply', resource: resource('someone.else') },
    ],
  }, 'CheckBatch');
  expect('CheckBatch answers both items', batch.decisions.length === 2, batch);
  expect('CheckBatch item 0 agrees with Check', batch.decisions[0].allowed === yes.decision.allowed, batch);
  expect('CheckBatch reports the revision', batch.revision === yes.revision, batch.revision);

  // grpcurl-equivalent: list the services, fetch their files and describe every method.
  const r = new reflection.ServerReflection(target, creds);
  const [list] = await reflect(r, [{ list_services: '' }]);
  if (list.error_response) fail('reflection list', list.error_response);
  const services = list.list_services_response.service.map((s) => s.name).sort();
  expect('reflection lists the services',
    ['grpc.health.v1.Health', 'rolegate.v1.Authorizer'].every((s) => services.includes(s)), services);
  // Like grpcurl: the files defining the services, then every file they import, by name.
  const files = new Map();
  let asks = services.map((s) => ({ file_containing_symbol: s }));
  while (asks.length > 0) {
    for (const ans of await reflect(r, asks)) {
      if (ans.error_response) fail('reflection describe', ans.error_response);
      for (const f of ans.file_descriptor_response.file_descriptor_proto) files.set(fileInfo(f).name, f);
    }
    const missing = new Set([...files.values()].flatMap((f) => fileInfo(f).deps).filter((d) => !files.has(d)));
    asks = [...missing].map((d) => ({ file_by_filename: d }));
  }
  const set = descriptorSet([...files.values()]);
  const described = grpc.loadPackageDefinition(loader.loadFileDescriptorSetFromBuffer(set, opts));
  const check = described.rolegate.v1.Authorizer.service.Check;
  expect('reflection describes Check', check.path === '/rolegate.v1.Authorizer/Check', check.path);
  for (const s of services) {
    const svc = s.split('.').reduce((o, k) => o && o[k], described);
    if (svc && svc.service) console.log(Object.values(svc.service).map((m) => `     ${m.path}`).join('\n'));
  }
  [h, a, r].forEach((c) => c.close());
}

main().catch((e) => fail('unexpected', String(e && e.stack)));
