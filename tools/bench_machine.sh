#!/usr/bin/env bash
# The name this machine's asv results go under (asv_bench/results/NAME/): the CPU's model name, its family
# and model numbers and the core count, e.g. Intel-R-Xeon-R-Processor-f6m207-2cores. The numbers are part of
# the name because virtual machines report one model name for different CPUs (this project's 2-core VMs
# say "Intel(R) Xeon(R) Processor" on models 207 and 167 alike), and one series must be one CPU. Registered
# with asv (~/.asv-machine.json) on the way, the CPU described with its numbers. Prints the name. Used by
# tools/bench_compare.sh and tools/bench_history.sh.
set -euo pipefail
read -r NAME CPU < <(python3 -c "
import os, re
fields = {}
for line in open('/proc/cpuinfo'):
    key, _, value = line.partition(':')
    fields.setdefault(key.strip(), value.strip())
model = fields.get('model name', 'cpu')
numbers = f\"f{fields['cpu family']}m{fields['model']}\" if 'cpu family' in fields and 'model' in fields else ''
name = '-'.join(part for part in (re.sub(r'[^A-Za-z0-9]+', '-', model).strip('-'), numbers) if part)
described = f\"{model} (family {fields['cpu family']}, model {fields['model']})\" if numbers else model
print(f'{name}-{os.cpu_count()}cores', described)")
(cd "$(dirname "$0")/../asv_bench" && asv machine --yes --machine "$NAME" --cpu "$CPU" >/dev/null 2>&1)
echo "$NAME"
