#!/usr/bin/env bash
# The name this machine's asv results go under (asv_bench/results/NAME/): the CPU's model name, its family
# and model numbers and the core count, e.g. Intel-R-Xeon-R-Processor-f6m207-2cores. The numbers are part of
# the name because virtual machines report one model name for different CPUs (this project's 2-core VMs
# say "Intel(R) Xeon(R) Processor" on models 207 and 167 alike), and one series must be one CPU. Registered
# with asv on the way: its entry in ~/.asv-machine.json written here with every field (`asv machine --yes`
# would store only the fields that differ from its guesses, and the results would then name no architecture,
# system, core count or memory), the CPU described with its numbers. Prints the name. Used by
# tools/bench_compare.sh and tools/bench_history.sh.
set -euo pipefail
python3 -c "
import json, os, platform, re
fields = {}
for line in open('/proc/cpuinfo'):
    key, _, value = line.partition(':')
    fields.setdefault(key.strip(), value.strip())
model = fields.get('model name', 'cpu')
numbered = 'cpu family' in fields and 'model' in fields
numbers = f\"f{fields['cpu family']}m{fields['model']}\" if numbered else ''
name = '-'.join(p for p in (re.sub(r'[^A-Za-z0-9]+', '-', model).strip('-'), numbers) if p) + f'-{os.cpu_count()}cores'
ram = next((l.split()[1] for l in open('/proc/meminfo') if l.startswith('MemTotal')), '')
entry = {'arch': platform.machine(), 'cpu': f\"{model} (family {fields['cpu family']}, model {fields['model']})\"
         if numbered else model, 'machine': name, 'num_cpu': str(os.cpu_count()),
         'os': f'{platform.system()} {platform.release()}', 'ram': ram}
path = os.path.expanduser('~/.asv-machine.json')
known = json.load(open(path)) if os.path.exists(path) else {'version': 1}
known[name] = entry
with open(path + '.tmp', 'w') as f:
    json.dump(known, f, indent=4, sort_keys=True)
os.replace(path + '.tmp', path)
print(name)"
