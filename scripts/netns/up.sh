#!/usr/bin/env bash
# A cluster without a cluster: N "hosts" as network namespaces joined through a bridge by veth pairs,
# each host's link shaped like a NIC.
#
#   scripts/netns/up.sh [--hosts=2] [--rate=10gbit] [--delay=50us]     (root; undo with down.sh)
#
# Host i is namespace tfs-h<i> with address 10.77.0.(10+i) on its eth0; the root namespace is 10.77.0.1
# (mpirun runs there). Shaping: --rate limits each direction of every host's link (tbf on both ends of
# its veth: what the host sends and what it receives); --delay adds one-way latency with netem, where the
# kernel has it (CONFIG_NET_SCH_NETEM; the 2-core development VM does not — then up.sh says so and the
# latency is the veth's own). Exit status 3 means "not permitted here" (no netns or no root): the tests skip.
set -euo pipefail
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$dir/common.sh"
hosts=2 rate=10gbit delay=""
for arg; do
  case $arg in
    --hosts=*) hosts=${arg#*=} ;;
    --rate=*) rate=${arg#*=} ;;
    --delay=*) delay=${arg#*=} ;;
    *) netns_die "usage: up.sh [--hosts=N] [--rate=RATE] [--delay=TIME]" ;;
  esac
done
[[ $hosts =~ ^[1-9][0-9]?$ ]] || netns_die "--hosts must be 1-99"
if [[ $(id -u) -ne 0 ]] || ! ip netns add "${netns_prefix}probe" 2>/dev/null; then
  echo "up.sh: network namespaces are not permitted here (need root and CONFIG_NET_NS)" >&2
  exit 3
fi
ip netns del "${netns_prefix}probe"
"$dir/down.sh" >/dev/null 2>&1 || true

# tbf's bucket must hold at least one timer tick of traffic at the rate: 1 ms of it, and ≥ 64 KB.
case $rate in
  *gbit) rate_mbit=$((${rate%gbit} * 1000)) ;;
  *mbit) rate_mbit=${rate%mbit} ;;
  *) netns_die "--rate wants whole mbit or gbit, e.g. 500mbit, 10gbit" ;;
esac
burst=$((rate_mbit * 125 > 65536 ? rate_mbit * 125 : 65536))

shape() {  # shape NETNS_OR_EMPTY DEV
  local in=() ; [[ -n $1 ]] && in=(ip netns exec "$1")
  if [[ -n $delay ]]; then
    if "${in[@]}" tc qdisc add dev "$2" root handle 1: netem delay "$delay" rate "$rate" 2>/dev/null; then
      return
    fi
    netem_missing=1
  fi
  "${in[@]}" tc qdisc add dev "$2" root tbf rate "$rate" burst "$burst" latency 50ms
}

netem_missing=0
ip link add "$netns_bridge" type bridge
ip addr add "$netns_subnet.1/24" dev "$netns_bridge"
ip link set "$netns_bridge" up
mkdir -p "$netns_state"
: > "$netns_state/hosts"
for ((i = 1; i <= hosts; i++)); do
  ns=$netns_prefix$i
  ip netns add "$ns"
  ip link add "$ns" type veth peer name eth0 netns "$ns"
  ip link set "$ns" master "$netns_bridge" up
  ip -n "$ns" addr add "$(netns_host_ip "$i")/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  shape "$ns" eth0   # what host i sends
  shape "" "$ns"     # what host i receives
  echo "$(netns_host_ip "$i") $ns" >> "$netns_state/hosts"
done
applied_delay=$delay
if ((netem_missing)); then
  applied_delay=""
  echo "up.sh: this kernel has no netem qdisc; links are rate-limited to $rate but not delayed" >&2
fi
printf 'rate=%s\ndelay=%s\n' "$rate" "$applied_delay" > "$netns_state/link"
echo "up.sh: $hosts hosts ($(cut -d' ' -f1 "$netns_state/hosts" | paste -sd' ')), links $rate${applied_delay:+, delay $applied_delay}"
