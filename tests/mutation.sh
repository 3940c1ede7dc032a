#!/usr/bin/env bash
# Mutation check of the pure core (docs/testing.md, "Mutation testing"): mutmut mutates the
# modules below one change at a time and runs the unit tests that cover each change; a mutant
# that no test kills is a behaviour no test pins down.
#
# mutmut imports the mutated copy from ./mutants, which must hold the package at its top level,
# so the run happens in a scratch clone of HEAD with operator/shorthop moved up one level;
# nothing in this checkout changes. Bounded by MUTATION_SECONDS (the run stops there and reports
# what it reached); MUTATION_MODULES picks the modules (paths under operator/shorthop/).
#
#   make mutation                                   # the default modules, 50 minutes at most
#   MUTATION_MODULES="placement/objective.py" MUTATION_SECONDS=600 make mutation
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SECONDS_BUDGET="${MUTATION_SECONDS:-3000}"
CHILDREN="${MUTATION_CHILDREN:-2}"
EXAMPLES="${SHORTHOP_EXAMPLES:-10}"  # each mutant reruns property tests: fewer examples each
MODULES="${MUTATION_MODULES:-topology/smi.py topology/links.py topology/levels.py topology/intranode.py placement/objective.py placement/occupancy.py placement/tree.py placement/triage.py placement/subsets.py}"
MUTMUT_VERSION="3.8.1"
WORK="${MUTATION_DIR:-$ROOT/.mutation}"
VENV="$WORK/venv"

mkdir -p "$WORK"
if [[ ! -x "$VENV/bin/mutmut" ]]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet -c "$ROOT/requirements/constraints.txt" "mutmut==$MUTMUT_VERSION" "$ROOT[dev]"
  # The tests must import the mutated copy, never an installed shorthop.
  "$VENV/bin/pip" uninstall --quiet --yes shorthop
fi

TREE="$WORK/tree"
rm -rf "$TREE"
git -C "$ROOT" worktree prune
git clone --quiet --no-hardlinks "$ROOT" "$TREE"
git -C "$TREE" checkout --quiet "$(git -C "$ROOT" rev-parse HEAD)"
mv "$TREE/operator/shorthop" "$TREE/shorthop"

only=""
for module in $MODULES; do
  only+="\"shorthop/$module\", "
done
cat >> "$TREE/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["shorthop/"]
only_mutate = [${only%, }]
pytest_add_cli_args_test_selection = ["tests/unit/topology", "tests/unit/placement"]
pytest_add_cli_args = ["-q", "-p", "no:cacheprovider", "-o", "addopts=", "-x"]
also_copy = ["conftest.py"]
EOF

cd "$TREE"
status=0
SHORTHOP_EXAMPLES="$EXAMPLES" timeout "$SECONDS_BUDGET" "$VENV/bin/mutmut" run --max-children "$CHILDREN" \
  > "$WORK/run.log" 2>&1 || status=$?
if [[ $status -eq 124 ]]; then
  echo "mutation: stopped at the budget of ${SECONDS_BUDGET}s; the counts cover the mutants reached"
elif [[ $status -ne 0 ]]; then
  tail -20 "$WORK/run.log"
  exit "$status"
fi
"$VENV/bin/mutmut" results --all true 2>/dev/null > "$WORK/results.txt" || true
python3 - "$WORK/results.txt" <<'EOF'
import collections
import sys

counts = collections.Counter()
for line in open(sys.argv[1], encoding="utf-8"):
    if ": " in line:
        counts[line.rsplit(": ", 1)[1].strip()] += 1
tested = counts["killed"] + counts["survived"] + counts["timeout"]
print(f"mutants: {sum(counts.values())}  " + "  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
if tested:
    score = (counts["killed"] + counts["timeout"]) / tested
    print(f"mutation score (killed of those tested): {score:.1%}")
EOF
echo "survivors: grep survived $WORK/results.txt; show one: cd $TREE && $VENV/bin/mutmut show NAME"
