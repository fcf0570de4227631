// Validates Prometheus Operator and cert-manager custom resources, read as JSON from stdin:
// [{"source": "...", "object": {...}}]. Exits 1 if any fails, after reporting every failure.
//
// The compiled CRD validators of @kubernetes-models/prometheus-operator and /cert-manager check types, enums,
// patterns and required fields but let unknown fields through, which an API server with strict
// field validation rejects; so unknown fields are also checked, against the field tree that the
// package's type declarations spell out.
"use strict";

const fs = require("fs");

// API group → the package of its models.
const PACKAGES = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
  "cert-manager.io": "@kubernetes-models/cert-manager",
};

// Builds {fields: Map<name, node>, open, leaf} from the `export interface I<Kind>` block, where each
// nested object type sits on its own lines: `"name"?: {` … `};`, `"name"?: Array<{` … `}>;`.
function fieldTree(dts, kind) {
  const lines = dts.split("\n");
  const start = lines.findIndex((l) => l.startsWith(`export interface I${kind} {`));
  if (start < 0) throw new Error(`no interface I${kind} in the type declarations`);
  const root = { fields: new Map(), open: false, leaf: false };
  const stack = [root];
  for (const raw of lines.slice(start + 1)) {
    const line = raw.trim();
    const field = line.match(/^"([^"]+)"\??: (.*)$/);
    if (field) {
      const node = { fields: new Map(), open: false, leaf: !field[2].endsWith("{") };
      stack[stack.length - 1].fields.set(field[1], node);
      if (!node.leaf) stack.push(node);
    } else if (line.startsWith("[key: string]")) {
      // A map: any key goes, and its values are not described further.
      stack[stack.length - 1].open = true;
      if (line.endsWith("{")) stack.push({ fields: new Map(), open: true, leaf: false });
    } else if (line.startsWith("}")) {
      stack.pop();
      if (stack.length === 0) break;
    }
  }
  return root;
}

function unknownFields(value, node, at, out) {
  if (node.leaf || node.open || value === null || typeof value !== "object") return;
  if (Array.isArray(value)) {
    value.forEach((item, i) => unknownFields(item, node, `${at}[${i}]`, out));
    return;
  }
  for (const [key, child] of Object.entries(value)) {
    const known = node.fields.get(key);
    if (known) unknownFields(child, known, `${at}.${key}`, out);
    else out.push(`${at}.${key}: unknown field \`${key}\``);
  }
}

function check({ source, object }) {
  const [group, version] = String(object.apiVersion).split("/");
  if (!(group in PACKAGES)) return [`no validator for apiVersion \`${object.apiVersion}\``];
  const modulePath = `${PACKAGES[group]}/${group}/${version}/${object.kind}`;
  let model, dtsPath;
  try {
    model = require(modulePath)[object.kind];
    dtsPath = require.resolve(modulePath).replace(/\.js$/, ".d.ts");
  } catch (e) {
    return [`no validator for ${object.apiVersion} ${object.kind}`];
  }
  const failures = [];
  try {
    new model(object).validate();
  } catch (e) {
    failures.push(e.message);
  }
  unknownFields(object, fieldTree(fs.readFileSync(dtsPath, "utf8"), object.kind), "", failures);
  return failures;
}

let ok = true;
for (const item of JSON.parse(fs.readFileSync(0, "utf8"))) {
  const failures = check(item);
  for (const failure of failures) console.log(`FAIL ${item.source}: ${failure}`);
  if (failures.length === 0) console.log(`ok   ${item.source} (CRD schema, unknown fields)`);
  ok = ok && failures.length === 0;
}
process.exit(ok ? 0 : 1);
