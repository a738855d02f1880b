#!/usr/bin/env bash
# Wall time of the whole demo DAG from a clean results/ (and resources/, logs/), on this machine.
#   bash benchmarks/demo_dag.sh            (from the repository root, inside the venv)
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf results/demo_* resources/datasets resources/models logs .snakemake
start=$(date +%s.%N)
snakemake --cores all --quiet rules
end=$(date +%s.%N)
printf 'demo DAG wall time: %.1f s on %s cores\n' "$(echo "$end - $start" | bc)" "$(nproc)"
