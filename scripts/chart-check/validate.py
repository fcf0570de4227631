"""Validate rendered manifests the way an API server with strict field validation would.

Built-in kinds are checked against the strict Kubernetes JSON schemas that kubernetes-validate
bundles (unknown fields, wrong types and missing required fields all fail). Custom resources go to
validate-crd.cjs. Exits 1 if any object fails, after reporting every failure.
"""

import argparse
import functools
import json
import os
import subprocess
import sys

import kubernetes_validate.utils as kv
import yaml

# kubernetes-validate re-reads its multi-megabyte definitions file for every object.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

CRD_GROUPS = ("monitoring.coreos.com/", "cert-manager.io/")


def objects(path):
    with open(path, encoding="utf-8") as f:
        for doc in yaml.safe_load_all(f):
            if doc is not None:
                yield doc


def describe(path, obj):
    name = (obj.get("metadata") or {}).get("name", "?")
    return f"{os.path.basename(path)}: {obj.get('kind', '?')}/{name}"


def check_builtin(obj, versions):
    """Returns the failures of one object against each Kubernetes version's strict schema."""
    failures = []
    for version in versions:
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            at = ".".join(str(p) for p in e.absolute_path) or "(root)"
            failures.append(f"kubernetes {version}: {at}: {e.message}")
        except (kv.SchemaNotFoundError, kv.VersionNotSupportedError) as e:
            failures.append(e.message)
    return failures


def check_crds(crds, validator):
    if not crds:
        return True
    result = subprocess.run(["node", validator], input=json.dumps(crds), text=True, check=False)
    return result.returncode == 0


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kube", action="append", required=True, help="Kubernetes version, repeatable")
    parser.add_argument("--crd-validator", required=True, help="path to validate-crd.cjs")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()

    ok = True
    crds = []
    for path in args.files:
        try:
            objs = list(objects(path))
        except yaml.YAMLError as e:
            print(f"FAIL {os.path.basename(path)}: not valid YAML: {e}")
            ok = False
            continue
        for obj in objs:
            what = describe(path, obj)
            if not isinstance(obj.get("apiVersion"), str) or not isinstance(obj.get("kind"), str):
                print(f"FAIL {what}: no apiVersion or kind")
                ok = False
            elif obj["apiVersion"].startswith(CRD_GROUPS):
                crds.append({"source": what, "object": obj})
            elif failures := check_builtin(obj, args.kube):
                ok = False
                for failure in failures:
                    print(f"FAIL {what}: {failure}")
            else:
                print(f"ok   {what} (kubernetes {', '.join(args.kube)}, strict)")
    ok = check_crds(crds, args.crd_validator) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
