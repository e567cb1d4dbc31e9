#!/usr/bin/env bash
# The name this machine's asv results go under (asv_bench/results/NAME/): the CPU model and the core
# count, e.g. Intel-R-Xeon-R-Processor-2cores; registered with asv (~/.asv-machine.json) on the way.
# Prints the name. Used by tools/bench_compare.sh and tools/bench_history.sh.
set -euo pipefail
NAME=$(python3 -c "
import os, re
model = next((l.split(':', 1)[1] for l in open('/proc/cpuinfo') if l.startswith('model name')), 'cpu')
print(re.sub(r'[^A-Za-z0-9]+', '-', model.strip()).strip('-') + f'-{os.cpu_count()}cores')")
(cd "$(dirname "$0")/../asv_bench" && asv machine --yes --machine "$NAME" >/dev/null 2>&1)
echo "$NAME"
