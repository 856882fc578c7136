#!/usr/bin/env bash
# End to end on a real FreeBSD host provisioned by the Vagrantfile (tests/freebsd/provision.sh):
# every job in nomad-jobs/ goes to the real Nomad agent and through the real plugin. Checks
# running state, logs, exit codes, HTTP through the published port, Nomad's service checks,
# rctl rules and their removal, stop within the kill timeout, recovery after the plugin is
# killed, and a clean `potctl gc` dry run at the end. Prints "N passed, M failed"; exits 1 on
# any failure. Run as root: sudo /vagrant/tests/freebsd/e2e.sh
set -u

REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
JOBS=$REPO/nomad-jobs
PLUGIN=/usr/local/libexec/nomad/plugins/nomad-pot-driver
export NOMAD_ADDR=${NOMAD_ADDR:-http://127.0.0.1:4646}
OUT=$(mktemp "${TMPDIR:-/tmp}/e2e.XXXXXX")
trap 'rm -f "$OUT"' EXIT

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1${2:+: $2}"; }
# check NAME COMMAND...: passes when the command succeeds; shows its last output lines if not.
check() {
    local name=$1
    shift
    if "$@" >"$OUT" 2>&1; then pass "$name"; else fail "$name" "$(tail -n 3 "$OUT" | tr '\n' ' ')"; fi
}
# eventually SECS COMMAND...: retries the command once a second for up to SECS seconds.
eventually() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 1
    done
}

api() { curl -sf "$NOMAD_ADDR/v1/$1"; }
alloc_of() { api "job/$1/allocations" | jq -r 'sort_by(.CreateIndex) | last | .ID // empty'; }
# first_alloc JOB: waits up to 30 s for the job's allocation and prints its id.
first_alloc() {
    local id end=$((SECONDS + 30))
    until id=$(alloc_of "$1") && [ -n "$id" ]; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 1
    done
    echo "$id"
}
alloc_field() { api "allocation/$1" | jq -r "$2"; }
task_state() { alloc_field "$1" ".TaskStates[\"$2\"].State // empty"; }
is_running() { [ "$(task_state "$1" "$2")" = running ]; }
is_dead() { [ "$(task_state "$1" "$2")" = dead ]; }
client_status_is() { [ "$(alloc_field "$1" .ClientStatus)" = "$2" ]; }
exit_code() {
    alloc_field "$1" "[.TaskStates[\"$2\"].Events[] | select(.Type == \"Terminated\") | .Details.exit_code] | last // empty"
}
host_port() {
    alloc_field "$1" ".AllocatedResources.Shared.Ports[] | select(.Label == \"$2\") | .Value"
}
host_ip() {
    alloc_field "$1" ".AllocatedResources.Shared.Ports[] | select(.Label == \"$2\") | .HostIP"
}
stdout_has() { nomad alloc logs "$1" "$2" | grep -q -- "$3"; }
stderr_has() { nomad alloc logs -stderr "$1" "$2" | grep -q -- "$3"; }
checks_pass() {
    nomad alloc checks -json "$1" | jq -e 'length > 0 and all(.[]; .Status == "success")'
}
http_has() { curl -sf --max-time 5 "http://$1/" | grep -q -- "$2"; }
jail_of() { jls name | grep "^$1_" | head -n 1; }
no_jail_of() { [ -z "$(jail_of "$1")" ]; }
plugin_pid() { pgrep -fx "$PLUGIN"; }

run_job() {
    nomad job stop -purge "$1" >/dev/null 2>&1
    nomad job run -detach "$JOBS/$2" >/dev/null
}
# stop_within JOB ALLOC SECS: the job stops and its alloc is complete within SECS seconds.
stop_within() {
    local start=$SECONDS
    nomad job stop -detach "$1" >/dev/null || return 1
    eventually "$3" client_status_is "$2" complete || return 1
    echo "stopped in $((SECONDS - start)) s"
}
purge() { nomad job stop -purge -detach "$1" >/dev/null 2>&1; }

echo "== the node"
check "plugin installed in plugin_dir" test -x "$PLUGIN"
check "pot initialised" zfs list -H -o name "$(pot config -q -g zfs_root)/jails"
check "racct enabled (vagrant reload after the first vagrant up)" test "$(sysctl -n kern.racct.enable)" = 1
check "VIMAGE kernel" test "$(sysctl -n kern.features.vimage)" = 1
check "pf has pot's anchors" sh -c 'pfctl -s Anchors | grep -q pot-nat && pfctl -s Anchors | grep -q pot-rdr'
check "the image is served" curl -sf -o /dev/null http://127.0.0.1:8080/images/demo_1.0.xz.skein
check "Nomad reports the pot driver healthy" eventually 60 sh -c \
    'nomad node status -self -json | jq -e ".Drivers.pot.Healthy == true"'
check "fingerprint: racct and bridge networking" sh -c \
    'nomad node status -self -json | jq -e ".Drivers.pot.Attributes[\"driver.pot.racct\"] == \"true\" and .Drivers.pot.Attributes[\"driver.pot.network.bridge\"] == \"true\""'

echo "== potctl on the node (README: Set up and check a node)"
check "potctl doctor: every check passes" \
    potctl doctor --nomad-config /usr/local/etc/nomad/pot-driver.hcl --plugin "$PLUGIN"
check "potctl plugin-check: Nomad would load the plugin" potctl plugin-check "$PLUGIN"
check "potctl init --dry-run" potctl init --dry-run
check "potctl init on a node pot init set up" potctl init

echo "== potctl run: the demo task without Nomad"
potctl_run_exit() { potctl run "$JOBS/demo.nomad.hcl" >"$OUT.run" 2>&1; [ $? -eq 3 ]; }
check "potctl run: the task's exit code 3" potctl_run_exit
check "potctl run: the task's stdout" grep -q "hello from hello in a jail" "$OUT.run"
rm -f "$OUT.run"

echo "== demo.nomad.hcl: a batch job's logs and exit code"
run_job demo demo.nomad.hcl
a=$(first_alloc demo)
check "demo: the task ran and ended" eventually 300 is_dead "$a" hello
check "demo: exit code 3" test "$(exit_code "$a" hello)" = 3
check "demo: stdout" stdout_has "$a" hello "hello from hello in a jail"
check "demo: /local, /secrets, /alloc mounted" stdout_has "$a" hello "task dirs mounted"
check "demo: stderr" stderr_has "$a" hello "this goes to stderr"
purge demo
check "demo: no jail left" eventually 30 no_jail_of hello

echo "== nginx.nomad.hcl: public-bridge, a published port, a service check, exec_stop"
run_job nginx nginx.nomad.hcl
a=$(first_alloc nginx)
check "nginx: running" eventually 120 is_running "$a" nginx
port=$(host_port "$a" http)
ip=$(host_ip "$a" http)
check "nginx: HTTP on 127.0.0.1:$port (the task's relay)" eventually 30 http_has "127.0.0.1:$port" nginx
check "nginx: HTTP on $ip:$port (Nomad's address)" eventually 30 http_has "$ip:$port" nginx
check "nginx: potctl ports lists the port" sh -c "potctl ports | grep -q ':$port -> '"
anchor=$(potctl ports | grep ":$port -> " | sed -n 's/.*pf anchor \([^;]*\);.*/\1/p')
check "nginx: pf rdr rule in $anchor" sh -c "pfctl -a '$anchor' -s nat | grep -q '$port'"
check "nginx: Nomad's HTTP check passes" eventually 60 checks_pass "$a"
check "nginx: stops within kill_timeout (20 s)" stop_within nginx "$a" 30
check "nginx: pf anchor flushed" sh -c "[ -z \"\$(pfctl -a '$anchor' -s nat 2>/dev/null)\" ]"
purge nginx
check "nginx: no jail left" eventually 30 no_jail_of nginx

echo "== go-driver-example.nomad.hcl: a Go-driver job, unchanged"
run_job example go-driver-example.nomad.hcl
a=$(first_alloc example)
check "example: running" eventually 120 is_running "$a" task1
port=$(host_port "$a" http)
check "example: port_map publishes port 80 on $port" eventually 30 http_has "127.0.0.1:$port" nginx
check "example: Nomad's TCP check passes" eventually 60 checks_pass "$a"
check "example: stops within kill_timeout (5 s)" stop_within example "$a" 15
purge example

echo "== private-bridge.nomad.hcl: two tasks on a private bridge, and a plugin killed"
run_job private-bridge private-bridge.nomad.hcl
a=$(first_alloc private-bridge)
check "private-bridge: pong running" eventually 120 is_running "$a" pong
check "private-bridge: ping running" eventually 120 is_running "$a" ping
check "private-bridge: ping reaches pong over the bridge" eventually 60 stdout_has "$a" ping "pong from pong"
jails_before=$(jls jid name | grep -E ' (ping|pong)_' | sort)
pongs_before=$(nomad alloc logs "$a" ping | grep -c "pong from pong")
old_pid=$(plugin_pid)
check "plugin: running before the kill" test -n "$old_pid"
kill -9 "$old_pid" 2>/dev/null
new_plugin() { local p; p=$(plugin_pid) && [ -n "$p" ] && [ "$p" != "$old_pid" ]; }
check "plugin: Nomad starts a new plugin process" eventually 90 new_plugin
check "plugin: the tasks kept running, not restarted" sh -c \
    "curl -sf '$NOMAD_ADDR/v1/allocation/$a' | jq -e '.TaskStates.ping.State == \"running\" and .TaskStates.pong.State == \"running\" and .TaskStates.ping.Restarts == 0 and .TaskStates.pong.Restarts == 0'"
check "plugin: the same jails" test "$(jls jid name | grep -E ' (ping|pong)_' | sort)" = "$jails_before"
more_pongs() { [ "$(nomad alloc logs "$a" ping | grep -c "pong from pong")" -gt "$pongs_before" ]; }
check "plugin: logs keep flowing after recovery" eventually 30 more_pongs
check "private-bridge: stops within kill_timeout (5 s)" stop_within private-bridge "$a" 15
purge private-bridge
check "private-bridge: no jail left" eventually 30 sh -c "! jls name | grep -qE '^(ping|pong)_'"

echo "== volumes.nomad.hcl: host volume, read-only mount, copy, hosts, dns"
run_job volumes volumes.nomad.hcl
a=$(first_alloc volumes)
check "volumes: the task ran and ended" eventually 120 is_dead "$a" check
check "volumes: exit code 0" test "$(exit_code "$a" check)" = 0
check "volumes: every check inside the jail passed" sh -c \
    "nomad alloc logs '$a' check | grep -c '^ok ' | grep -qx 7"
check "volumes: the task wrote into the host volume" grep -qx "$a" /var/db/rig/data/written-by-volumes-job
purge volumes

echo "== limits.nomad.hcl: rctl rules and a ZFS quota, removed at stop"
run_job limits limits.nomad.hcl
a=$(first_alloc limits)
check "limits: running" eventually 120 is_running "$a" limits
pot=$(jail_of limits)
rule() { rctl | grep -qx "jail:$pot:$1"; }
check "limits: memory_max as memoryuse" rule "memoryuse:deny=134217728"
check "limits: cpu as pcpu" sh -c "rctl | grep -q '^jail:$pot:pcpu:deny='"
check "limits: maxproc" rule "maxproc:deny=50"
check "limits: openfiles" rule "openfiles:deny=1024"
check "limits: vmemoryuse" rule "vmemoryuse:deny=1073741824"
check "limits: writebps" rule "writebps:throttle=52428800"
check "limits: ZFS quota" test "$(zfs get -H -p -o value quota "$(pot config -q -g zfs_root)/jails/$pot")" = 2147483648
check "potctl ls: the pot with its allocation" sh -c "potctl ls | grep '$pot' | grep -q '$a'"
check "potctl ls --json: found by alloc id" sh -c \
    "potctl ls --json | jq -r '.[] | select(.owner.alloc_id == \"$a\") | .name' | grep -qx '$pot'"
check "potctl ps: the running pot" sh -c "potctl ps | grep -q '$pot'"
check "potctl show: its rctl limits" sh -c "potctl show '$pot' | grep -q maxproc"
check "potctl stats: its memory and cpu" sh -c "potctl stats | grep -q '$pot'"
check "potctl images: demo_1_0 in use" sh -c "potctl images | grep -q demo_1_0"
check "potctl config: where zfs_root comes from" sh -c "potctl config | grep -q zfs_root"
check "limits: stops within kill_timeout (5 s)" stop_within limits "$a" 15
check "limits: rctl rules removed" sh -c "! rctl | grep -q '^jail:$pot:'"
purge limits

echo "== signed-image.nomad.hcl: a signed image"
run_job signed signed-image.nomad.hcl
a=$(first_alloc signed)
check "signed: the task ran and ended" eventually 300 is_dead "$a" signed
check "signed: exit code 0" test "$(exit_code "$a" signed)" = 0
check "signed: stdout" stdout_has "$a" signed "running from a signed image"
check "signed: the verified signature is cached" test -f /var/cache/pot/demo_1.0-signed.xz.skein.sig
purge signed

echo "== the node afterwards"
check "no jail of any job left" eventually 30 sh -c \
    "! jls name | grep -qE '^(hello|nginx|task1|ping|pong|check|limits|signed)_'"
check "potctl gc (dry run) finds nothing" sh -c \
    "potctl gc | tee /dev/stderr | grep -qx \"nothing of this driver's on this node\""

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
