#!/usr/bin/env bash
# Open MPI's plm_rsh_agent for the namespaces of launch/netns_cluster.sh: called as ssh would be
# (`netns_agent.sh ADDRESS COMMAND...`), it runs COMMAND in the namespace that owns ADDRESS instead
# of logging in. launch/run.sh --netns sets it; DS_NETNS_PREFIX (inherited from mpirun) picks the cluster.
set -euo pipefail

# Open MPI passes no options to an agent that is not ssh or rsh, but skip any, as ssh would take them.
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
[[ $# -ge 2 ]] || { echo "netns_agent.sh: usage: netns_agent.sh ADDRESS COMMAND..." >&2; exit 255; }
addr=$1; shift
# 255: what ssh returns when it cannot reach the host.
ns=$("$(dirname "$0")/netns_cluster.sh" ns "$addr") || exit 255

# Every namespace shares the machine's UTS hostname. Open MPI 4.1 places ranks and computes locality
# by daemon, not by hostname, so one shared name works (measured: same weights either way), but its
# messages and the ranks' hostname would then name one node for every host; a UTS namespace per
# host gives each the name of its namespace, as a real node has. ssh hands COMMAND, its words
# joined, to the remote shell; so does this.
rc=0
# (Its own stderr to /dev/null around it: bash would report a killed child there; the child's goes on.)
{ ip netns exec "$ns" unshare --uts bash -c 'hostname "$1" && eval "$2"' netns_agent "$ns" "$*" 2>&3 || rc=$?
} 3>&2 2>/dev/null
# This shell stays in mpirun's namespace, so it outlives a host whose processes all die. mpirun -q
# says nothing then (without -q, a misleading "unable to reliably start one or more daemons"), so
# it tells run.sh, which names the host's ranks. A daemon ended by a signal, not by mpirun, is lost.
if [[ $rc -gt 128 && -n ${DS_NETNS_LOST:-} ]]; then echo "$addr $ns $((rc - 128))" >>"$DS_NETNS_LOST"; fi
exit "$rc"
