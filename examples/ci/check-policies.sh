#!/usr/bin/env bash
# A pull-request check for a repository of rolegate policies: validate the changed policies, run
# their tests, and show what the change does to each member's access compared with the base
# branch. Exits 1 when the policies are broken or a test fails, and 3 when the change widens
# someone's access (so the pipeline can ask for a second approval instead of failing outright).
#
#   examples/ci/check-policies.sh [POLICY_DIR] [BASE_REF]
#
# POLICY_DIR defaults to `policies`, BASE_REF to `origin/main`. The diff is also written as
# Markdown to $DIFF_MARKDOWN (default policy-diff.md) for a pull-request comment.
set -euo pipefail

dir=${1:-policies}
base_ref=${2:-origin/main}
rolegate=${ROLEGATE:-rolegate}
markdown=${DIFF_MARKDOWN:-policy-diff.md}

base=$(mktemp -d)
trap 'rm -rf "$base"' EXIT
# The base branch's policies, as committed: nothing of the working tree leaks in.
if git cat-file -e "$base_ref:$dir" 2>/dev/null; then
  git archive "$base_ref" "$dir" | tar -x -C "$base"
else
  mkdir -p "$base/$dir"   # the directory is new in this change
fi

"$rolegate" validate "$dir" --base "$base/$dir"
"$rolegate" test "$dir"
"$rolegate" diff "$base/$dir" "$dir" --format markdown >"$markdown"
"$rolegate" diff "$base/$dir" "$dir"

status=0
"$rolegate" diff "$base/$dir" "$dir" --fail-on grant >/dev/null || status=$?
case $status in
  0) ;;
  1) echo "this change widens access: it needs a second approval (see $markdown)" >&2; exit 3 ;;
  *) exit "$status" ;;
esac
