#!/bin/sh
# Smoke check on a real FreeBSD host provisioned by the Vagrantfile: the agent loaded the
# driver and reports it healthy. Prints "N passed, M failed".
set -u
passed=0
failed=0
check() {
    name=$1
    shift
    if "$@" >/dev/null 2>&1; then
        passed=$((passed + 1)); echo "ok   $name"
    else
        failed=$((failed + 1)); echo "FAIL $name"
    fi
}
check "plugin binary installed" test -x /usr/local/libexec/nomad/plugins/nomad-pot-driver
check "pot initialised" zfs list -H -o name zroot/pot/jails
check "racct enabled" sh -c '[ "$(sysctl -n kern.racct.enable)" = 1 ]'
check "VIMAGE kernel" sh -c '[ "$(sysctl -n kern.features.vimage)" = 1 ]'
check "nomad sees a healthy pot driver" sh -c \
    'nomad node status -self -verbose | grep -E "^pot +true +true"'
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
