"""Check that a chart's README documents every value, and nothing that is not a value.

Walks values.yaml down through the objects that values.schema.json closes with
`additionalProperties: false` (the chart's own settings); below that, Kubernetes data such as
`securityContext` counts as one value. Each must appear in the first column of the table under the README's `## Values`,
and each path there must exist in the schema. Exits 1 listing every mismatch.
"""

import fnmatch
import json
import re
import sys

import yaml


def documented_values(values, schema, prefix=""):
    for key, value in values.items():
        path = f"{prefix}{key}"
        node = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and value and node.get("additionalProperties") is False:
            yield from documented_values(value, node, f"{path}.")
        else:
            yield path


def schema_paths(schema, prefix=""):
    for key, node in schema.get("properties", {}).items():
        yield f"{prefix}{key}"
        yield from schema_paths(node, f"{prefix}{key}.")


def main(values_path, schema_path, readme_path):
    with open(values_path, encoding="utf-8") as f:
        values = yaml.safe_load(f)
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    with open(readme_path, encoding="utf-8") as f:
        section = f.read().partition("\n## Values\n")[2].partition("\n## ")[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    listed = {token for row in rows for token in re.findall(r"`([^`]+)`", row)}
    known = set(schema_paths(schema))

    problems = [f"`{p}` is a value but the README does not list it"
                for p in documented_values(values, schema) if p not in listed]
    problems += [f"the README lists `{t}`, which is not a value"
                 for t in sorted(listed) if not fnmatch.filter(known, t)]
    for problem in problems:
        print(f"FAIL {readme_path}: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
