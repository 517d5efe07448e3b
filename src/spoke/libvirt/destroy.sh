#!/bin/sh
# destroy.sh <vm id> <disk dir>: pulls the plug if it runs, undefines it, removes its disk and seed.
# Deleting a capsul that is not there succeeds.
. "$(dirname "$0")/common.sh"
vm_id=$1 disk_dir=$2

state=$(domain_state "$vm_id")
if [ -n "$state" ]; then
  if [ "$state" != "shut off" ]; then virsh_unless "not running" destroy "$vm_id"; fi
  "$virsh" undefine --nvram "$vm_id" >/dev/null
fi
rm -f "$disk_dir/$vm_id.qcow2" "$disk_dir/$vm_id-cidata.iso"
