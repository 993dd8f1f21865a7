#!/usr/bin/env bash
# Write constraints.txt, the lock of the README's installs, from a fresh install.
#
#   tools/lock.sh [PYTHON]        (default: python3; run from anywhere, takes a few minutes)
#
# 1. Builds a fresh virtual environment in a temporary folder with PYTHON.
# 2. Installs the project there as the README's test command does (`pip install -c ... -e '.[test]'`; the
#    [test] install is a superset of the plain `-e .` one), constrained only by the torch and torchvision
#    pins of the current constraints.txt: those builds lie on the lab machines' disk, so they stay the choice.
# 3. Writes `pip freeze --all --exclude-editable` (every distribution in the environment, setuptools included,
#    which torch requires at run time; left out: the project itself and pip, the installer) into constraints.txt
#    atomically (a temporary file in the same folder, then a rename), under a header that says how it was
#    made. Local version labels (torch's `+cpu`) are dropped so that the pins also admit the CUDA builds of
#    the same release.
#
# To move torch: edit its two pins in constraints.txt, then rerun this script. pip's own configuration
# (/etc/pip.conf, /etc/xdg/pip, PIP_* variables) applies as it does to any install on this machine.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${1:-python3}
lock="$root/constraints.txt"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ophora-lock.XXXXXX")
new=""
trap 'rm -rf "$tmp"; if [ -n "$new" ]; then rm -f "$new"; fi' EXIT

grep -E '^(torch|torchvision)==' "$lock" > "$tmp/seed.txt" || {
    echo "tools/lock.sh: $lock has no torch==/torchvision== pins to start from" >&2
    exit 1
}
echo "seed pins: $(tr '\n' ' ' < "$tmp/seed.txt")" >&2

"$python" -m venv "$tmp/venv"
venv_python="$tmp/venv/bin/python"
"$venv_python" -m pip install --quiet -c "$tmp/seed.txt" -e "$root[test]"

"$venv_python" -m pip freeze --all --exclude-editable \
    | grep -v -i -E '^(ophora|pip)([=@ ]|$)' \
    | sed -E 's/^([^=]+==[^+]+)\+.*$/\1/' > "$tmp/freeze.txt"
if grep -q ' @ ' "$tmp/freeze.txt"; then
    echo "tools/lock.sh: pip freeze gave direct references, which a constraints file cannot carry:" >&2
    grep ' @ ' "$tmp/freeze.txt" >&2
    exit 1
fi
for name in $(cut -d= -f1 "$tmp/seed.txt"); do
    grep -q -i -E "^$name==" "$tmp/freeze.txt" || { echo "tools/lock.sh: $name missing from the freeze" >&2; exit 1; }
done

platform=$("$venv_python" -c 'import platform, sys; print(f"CPython {sys.version.split()[0]} on {sys.platform} {platform.machine()}")')
new=$(mktemp "$root/.constraints.txt.XXXXXX")
{
    echo "# Exact versions for the README's two installs and CI: every distribution that"
    echo "# \`pip install -c constraints.txt -e '.[test]'\` resolves (a superset of \`-e .\`); not pip, not the project."
    echo "# Written by tools/lock.sh from a fresh virtual environment ($platform); do not edit by"
    echo "# hand except the torch and torchvision pins, then rerun tools/lock.sh. torch and torchvision lie on these"
    echo "# machines' disk; a looser requirement would download a multi-GB build. pyproject.toml keeps ranges for"
    echo "# users elsewhere. $(wc -l < "$tmp/freeze.txt") distributions."
    cat "$tmp/freeze.txt"
} > "$new"
chmod 644 "$new"
mv -f "$new" "$lock"
echo "wrote $lock ($(wc -l < "$tmp/freeze.txt") pins)" >&2
