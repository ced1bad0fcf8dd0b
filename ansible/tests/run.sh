#!/usr/bin/env bash
# npm run test:ansible: the vfioctl.fleet collection, offline, with Debian's ansible-core.
#  1. ansible-doc renders each module's documentation; py_compile and pycodestyle (ansible-test's
#     pep8 settings) on the collection's Python. ansible-test sanity itself needs pip: not here.
#  2. ansible-test units (pytest from Debian, run by ansible-test on the system Python).
#  3. ansible-test integration: the modules against the bundled CLI on a fixture tree.
#  4. the fleet: ansible-playbook over 20 local hosts, each a fixture tree with a simulated kernel
#     (test/ansible/fleet.ansible.ts).
# Installs what it needs when missing (idempotent). Needs root for apt-get.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
need=()
[ -x /usr/bin/ansible-playbook ] || need+=(ansible-core)
for m in pytest xdist pytest_forked pytest_mock mock; do /usr/bin/python3 -c "import $m" 2>/dev/null || need+=("python3-${m//_/-}"); done
[ -x /usr/bin/pycodestyle ] || need+=(pycodestyle)
if [ ${#need[@]} -gt 0 ]; then
  # Debian's names: xdist is python3-pytest-xdist, the others as imported.
  pkgs=(); for p in "${need[@]}"; do case $p in python3-xdist) pkgs+=(python3-pytest-xdist) ;; *) pkgs+=("$p") ;; esac; done
  echo "test:ansible: installing ${pkgs[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
start=$(date +%s)
# Ansible's tools with the system Python first on PATH (ansible-core is Debian's; a pyenv or venv
# python3 must not stand in), while node and npm stay whichever the rest of the suite uses.
sys() { PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH "$@"; }
pyver=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
coll=ansible/ansible_collections/vfioctl/fleet
passed=0; failed=0
step() { # NAME COMMAND...: runs it, counts it, says how long it took
  local name=$1 t0=$SECONDS; shift
  if "$@"; then echo "ok: $name ($((SECONDS - t0)) s)"; passed=$((passed + 1)); else echo "FAILED: $name ($((SECONDS - t0)) s)"; failed=$((failed + 1)); fi
}

echo "== documentation and style"
for m in "$coll"/plugins/modules/*.py; do
  name=$(basename "$m" .py)
  step "ansible-doc vfioctl.fleet.$name" sys bash -c "ANSIBLE_COLLECTIONS_PATH='$repo/ansible' /usr/bin/ansible-doc -t module vfioctl.fleet.$name >/dev/null"
done
step "py_compile" /usr/bin/python3 -m py_compile $(find "$coll" -name '*.py' -not -path '*/tests/output/*')
step "pycodestyle (ansible-test's pep8 settings)" /usr/bin/pycodestyle --max-line-length=160 --ignore=E402,W503,W504,E741 "$coll/plugins" "$coll/tests"

step "role vfioctl.fleet.host (check mode)" sys bash -c "ANSIBLE_CONFIG='$repo/ansible/tests/fleet/ansible.cfg' /usr/bin/ansible-playbook -i localhost, ansible/tests/role.yml --check"

echo "== ansible-test units"
step "ansible-test units" sys bash -c "cd '$coll' && /usr/bin/ansible-test units --python $pyver --color no"

echo "== ansible-test integration"
# The bundle (the CLI the integration target runs) and build/test (fixtures, the fleet driver).
npm run --silent build
# ansible-test passes the target no environment: the checkout's path goes in as a vars file.
printf 'vfioctl_repo: %s\n' "$repo" > "$coll/tests/integration/integration_config.yml"
# Its play output is long (and shows the expected failure of the broken-policy task): kept in a
# log, printed when the target fails.
log=$(mktemp)
step "ansible-test integration" sys bash -c "cd '$coll' && /usr/bin/ansible-test integration --python $pyver --color no vfioctl_policy >'$log' 2>&1 || { cat '$log'; exit 1; }"
grep -E '^testhost +:' "$log" || true
rm -f "$log"
rm -rf "$coll/tests/output" "$coll/tests/integration/integration_config.yml"

echo "== fleet (node test runner)"
node --test --test-reporter=spec --test-concurrency=1 build/test/ansible/fleet.ansible.js || failed=$((failed + 1))
echo "test:ansible: $(( $(date +%s) - start )) s"
echo "ansible: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
