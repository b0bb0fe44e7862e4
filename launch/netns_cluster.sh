#!/usr/bin/env bash
# A pretend cluster on one machine for multi-host tests: N network namespaces ("hosts") joined by a
# Linux bridge, each with one address of a private /24 that exists only inside these namespaces.
#   launch/netns_cluster.sh up N     # prints "NAMESPACE ADDRESS" per host
#   launch/netns_cluster.sh down     # removes every namespace of the prefix; idempotent
#   launch/netns_cluster.sh list     # the same lines as `up` for a cluster that is up
#   launch/netns_cluster.sh ns ADDR  # the host namespace that owns ADDR (for run.sh and the agent)
# Env: DS_NETNS_PREFIX (default ds-host; hosts are PREFIX0..N-1, the bridge's namespace PREFIX-br),
# DS_NETNS_SUBNET (default 10.77.0; host i gets SUBNET.(i+1)/24). Needs root and `ip netns`.
set -euo pipefail

prefix=${DS_NETNS_PREFIX:-ds-host}
subnet=${DS_NETNS_SUBNET:-10.77.0}
brns=$prefix-br

die() { echo "netns_cluster.sh: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root (ip netns)"
[[ $subnet =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "DS_NETNS_SUBNET: '$subnet' is not three octets (e.g. 10.77.0)"

# The host namespaces of this prefix, in index order (PREFIX0, PREFIX1, ..., not PREFIX-br).
hosts() { ip netns list | awk '{print $1}' | grep -E "^${prefix}[0-9]+$" | sort -V || true; }
list() { local ns; for ns in $(hosts); do echo "$ns $subnet.$((${ns#"$prefix"} + 1))"; done; }

ns_of() {
  local ns
  for ns in $(hosts); do
    if ip -n "$ns" -o -4 addr show | grep -q " inet $1/"; then echo "$ns"; return; fi
  done
  die "no namespace $prefix* has the address $1 (launch/netns_cluster.sh up N)"
}

down() {
  local ns
  # Deleting a namespace deletes its ends of the veth pairs, and with them the other ends.
  for ns in $(hosts) $brns; do
    ip netns list | awk '{print $1}' | grep -qx -- "$ns" || continue
    # A process left inside would keep the namespace's network alive after the name is gone.
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    ip netns delete "$ns"
  done
}

up() {
  local n=$1 i ns
  [[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 200 ]] || die "up: N must be 1..200, got '$n'"
  [[ -z $(hosts) ]] || die "up: namespaces $prefix* exist already (run: DS_NETNS_PREFIX=$prefix $0 down)"
  # A failure half-way leaves nothing behind.
  trap 'down' ERR
  # The bridge lives in a namespace of its own, so nothing is added to the host's network.
  ip netns add "$brns"
  ip -n "$brns" link set lo up
  ip -n "$brns" link add br0 type bridge
  ip -n "$brns" link set br0 up
  for ((i = 0; i < n; i++)); do
    ns=$prefix$i
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # Both ends are created inside namespaces (the pair never appears in the root namespace).
    ip -n "$brns" link add "v$i" type veth peer name eth0 netns "$ns"
    ip -n "$brns" link set "v$i" master br0 up
    ip -n "$ns" addr add "$subnet.$((i + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
  done
  trap - ERR
  # The links come up asynchronously; wait until every host's link is up and the last host answers
  # (a refused TCP connection is an answer: there is no ping in minimal images).
  for ((i = 0; i < n; i++)); do
    local tries=0
    until [[ $(ip netns exec "$prefix$i" timeout 1 bash -c "exec 3<>/dev/tcp/$subnet.$n/9" 2>&1) == \
        *"Connection refused"* ]]; do
      tries=$((tries + 1))
      [[ $tries -lt 20 ]] || { down; die "up: $prefix$i cannot reach $subnet.$n"; }
      sleep 0.1
    done
  done
  list
}

case "${1:-}" in
  up) [[ $# == 2 ]] || die "usage: $0 up N | down | list | ns ADDRESS"; up "$2" ;;
  down) down ;;
  list) list ;;
  ns) [[ $# == 2 ]] || die "usage: $0 ns ADDRESS"; ns_of "$2" ;;
  *) die "usage: $0 up N | down | list | ns ADDRESS" ;;
esac
