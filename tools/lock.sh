#!/usr/bin/env bash
# Re-resolve the lock files for CPython 3.11, 3.12 and 3.13 on Linux x86_64 (needs the package index).
#
#   requirements.lock      runtime: the package's dependencies and its runtime extras
#                          (offline-model, search, onnx) -- what a library user installs
#   requirements-dev.lock  `-r requirements.lock` plus the dev, docs, bench, scale and openvino extras
#
# Neither file holds torch or torch's own CUDA packages (nvidia-*, cuda-*, triton): torch is installed
# first, with its dependencies, by pip's normal resolver (see README "Install"). The pins are resolved
# together with $TORCH (default torch==2.13.0), which the Makefile installs by default.
#
# How: pip resolves everything except quaterion and quaterion-models (their metadata says Python <3.11,
# protobuf <3.20, numpy <2 and mmh3 <4, none of which holds at run time) on Python 3.11, preferring the
# current pins (`--upgrade`: newest allowed versions instead). The same resolution on 3.12 and 3.13 must
# give exactly the same pins; then every pin must install from a wheel on each version (no source builds).
#
# Usage: tools/lock.sh [--upgrade | --check]
#   --check    only verify the current pins: one wheel per pin for each of 3.11, 3.12 and 3.13
# Interpreters: $PY311, $PY312, $PY313, else python3.X on PATH, else the newest pyenv 3.X.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
case "$mode" in "" | --upgrade | --check) ;; *) echo "usage: tools/lock.sh [--upgrade | --check]" >&2; exit 2 ;; esac
TORCH=${TORCH:-torch==2.13.0}
VERSIONS=(3.11 3.12 3.13)
QUATERION=(quaterion==0.1.35 quaterion-models==0.1.19)

# Lock-time policy on top of pyproject.toml's ranges.
POLICY=$(cat <<'EOF'
# numpy 2.1 has wheels for cp311-cp313 (1.26 has none for cp313); Lightning 1.9.5's np.Inf is aliased in _compat
numpy>=2.1,<2.2
# quaterion says mmh3 <4; 3.1.0 has no cp312/cp313 wheels, 5.0.0 has them and the same hash64
mmh3==5.0.0
# quaterion says rich <13; nncf (the openvino extra) needs >=13.5, and quaterion's progress bar runs on it
rich>=13.5
EOF
)

find_python() {  # find_python 3.12 -> path of a working CPython 3.12 interpreter
  local version=$1 var="PY${1/./}" candidate pyenv_version
  for candidate in "${!var:-}" "python$version"; do
    if [ -n "$candidate" ] && "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$version'.split('.'))))" 2>/dev/null; then
      "$candidate" -c "import sys; print(sys.executable)"
      return
    fi
  done
  if command -v pyenv >/dev/null; then
    pyenv_version=$(pyenv versions --bare | grep -E "^${version//./\\.}\.[0-9]+$" | sort -V | tail -1 || true)
    if [ -n "$pyenv_version" ]; then
      PYENV_VERSION=$pyenv_version pyenv which python
      return
    fi
  fi
  echo "tools/lock.sh: no Python $version found (set PY${version/./})" >&2
  return 1
}

declare -A PY
for version in "${VERSIONS[@]}"; do
  PY[$version]=$(find_python "$version")
  echo "Python $version: ${PY[$version]}"
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip_dry() {  # pip_dry VERSION REPORT ARGS... -> resolve without installing; report as JSON
  local version=$1 report=$2
  shift 2
  "${PY[$version]}" -m pip install --dry-run --ignore-installed --only-binary=:all: --disable-pip-version-check \
    --quiet --report "$report" "$@"
}
pins_of() {  # pins_of REPORT -> "Name==version" lines, sorted, without local version labels (+cpu)
  "${PY[3.11]}" - "$1" <<'PY'
import json, sys
items = json.load(open(sys.argv[1]))["install"]
pins = {i["metadata"]["name"]: i["metadata"]["version"].split("+")[0] for i in items}
print("\n".join(f"{name}=={pins[name]}" for name in sorted(pins, key=str.lower)))
PY
}
# torch and what only torch brings (its CUDA libraries): installed in step 1, never pinned here
without_torch() { grep -viE '^(torch|triton|nvidia-[^=]*|cuda-[^=]*)==' || true; }

check_wheels() {  # every pin (and $TORCH) installs from a wheel on each version
  local version status=0
  for version in "${VERSIONS[@]}"; do
    if pip_dry "$version" "$work/wheels-$version.json" --no-deps --ignore-requires-python \
        -r requirements-dev.lock "$TORCH"; then
      echo "Python $version: a wheel for each of the $(pins_of "$work/wheels-$version.json" | wc -l) pins (with $TORCH)"
    else
      echo "Python $version: some pin has no wheel (see above)" >&2
      status=1
    fi
  done
  return $status
}

if [ "$mode" = --check ]; then
  check_wheels
  exit
fi

# Top-level requirements from pyproject.toml, split into runtime and dev-only.
"${PY[3.11]}" - "$work" <<'PY'
import pathlib, re, sys, tomllib
work = pathlib.Path(sys.argv[1])
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
own = re.compile(r"^(quaterion|quaterion-models|torch|refinery-quaterion)\b", re.I)
def keep(reqs): return [r for r in reqs if not own.match(r)]
runtime = keep(project["dependencies"]) + [r for e in ("offline-model", "search", "onnx") for r in keep(extras[e])]
dev = [r for e in ("dev", "docs", "bench", "scale", "openvino") for r in keep(extras[e])]
(work / "runtime.in").write_text("\n".join(runtime) + "\n")
(work / "dev.in").write_text("\n".join(dev) + "\n")
PY
printf '%s\n' "$POLICY" > "$work/policy.txt"
if [ "$mode" != --upgrade ] && [ -f requirements.lock ]; then
  # Prefer the current pins (except those the policy decides) so a re-lock changes only what it must.
  policy_names=$(grep -vE '^#' "$work/policy.txt" | sed -E 's/[<>=!~ ].*//' | paste -sd'|')
  cat requirements.lock requirements-dev.lock 2>/dev/null | grep -E '^[A-Za-z0-9]' \
    | grep -viE "^(${policy_names}|quaterion|quaterion-models)==" >> "$work/policy.txt" || true
fi

echo "Resolving on Python 3.11 ..."
if ! pip_dry 3.11 "$work/full.json" "$TORCH" -r "$work/runtime.in" -r "$work/dev.in" -c "$work/policy.txt"; then
  echo "tools/lock.sh: no resolution; if the current pins are in the way, run tools/lock.sh --upgrade" >&2
  exit 1
fi
pins_of "$work/full.json" > "$work/full.txt"
pip_dry 3.11 "$work/runtime.json" "$TORCH" -r "$work/runtime.in" -c "$work/full.txt"
pins_of "$work/runtime.json" | without_torch > "$work/runtime.txt"
without_torch < "$work/full.txt" | grep -vxFf "$work/runtime.txt" > "$work/dev.txt" || true

for version in 3.12 3.13; do
  echo "Resolving on Python $version ..."
  pip_dry "$version" "$work/full-$version.json" "$TORCH" -r "$work/runtime.in" -r "$work/dev.in" -c "$work/full.txt"
  if ! diff <(without_torch < "$work/full.txt") <(pins_of "$work/full-$version.json" | without_torch); then
    echo "tools/lock.sh: Python $version resolves to other pins than 3.11 (diff above: < 3.11, > $version)" >&2
    exit 1
  fi
done

header() {
  cat <<EOF
# $1
# CPython 3.11, 3.12 and 3.13, Linux x86_64: every pin has a wheel for each (checked by tools/lock.sh).
# Resolved together with $TORCH, which is NOT in this file: install torch first, with its own
# dependencies (the CPU or CUDA build for your machine), then these pins without dependency resolution:
#   pip install "$TORCH"
#   pip install --no-deps --ignore-requires-python -r $2
# Why --no-deps: quaterion 0.1.35 / quaterion-models 0.1.19 declare Python <3.11, protobuf <3.20, numpy <2
# and mmh3 <4; none of that holds at run time (tested), so pip's resolver cannot be used for them.
# Regenerate with \`make lock\` (tools/lock.sh).
EOF
}
{
  header "Runtime pins for refinery-quaterion and its extras offline-model, search and onnx." \
    'requirements.lock "refinery-quaterion[offline-model,search,onnx]"'
  sort -f "$work/runtime.txt" <(printf '%s\n' "${QUATERION[@]}")
} > requirements.lock.new
{
  header "Development pins: the runtime pins plus the dev, docs and bench extras (tests, lint, docs, benchmarks)." \
    'requirements-dev.lock -e ".[dev]"'
  echo "-r requirements.lock"
  sort -f "$work/dev.txt"
} > requirements-dev.lock.new
mv requirements.lock.new requirements.lock
mv requirements-dev.lock.new requirements-dev.lock
echo "requirements.lock: $(grep -c '^[A-Za-z]' requirements.lock) pins; requirements-dev.lock: $(grep -c '^[A-Za-z]' requirements-dev.lock) more"
check_wheels
