#!/usr/bin/env bash
# Removes what up.sh made: the host namespaces (their veths go with them), the bridge, the state.
set -uo pipefail
dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$dir/common.sh"
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$netns_prefix" || true); do
  ip netns del "$ns"
done
ip link del "$netns_bridge" 2>/dev/null
rm -rf "$netns_state"
exit 0
