#!/bin/sh
# ip.sh <vm id>: the addresses the network's DHCP server leased to it.
. "$(dirname "$0")/common.sh"
"$virsh" domifaddr "$1" --source lease
