# Shared names of the emulated cluster (sourced by the scripts next to it).
netns_prefix=${TFSCALE_NETNS_PREFIX:-tfs-h}     # namespaces tfs-h1, tfs-h2, …
netns_bridge=${TFSCALE_NETNS_BRIDGE:-tfsbr0}    # the "switch" in the root namespace
netns_subnet=${TFSCALE_NETNS_SUBNET:-10.77.0}   # root 10.77.0.1, host i 10.77.0.(10+i)
netns_state=${TFSCALE_NETNS_STATE:-/run/tfscale-netns}
netns_host_ip() { echo "$netns_subnet.$((10 + $1))"; }
netns_die() { echo "$(basename "$0"): $*" >&2; exit 2; }
