#!/bin/sh
# create.sh <vm id> <template image> <disk dir> <work dir>
# A qcow2 overlay on the template, a cloud-init seed from <work dir>/user-data and meta-data, then defines
# <work dir>/domain.xml and starts it. A failed create undoes what it did, so it leaves nothing behind.
. "$(dirname "$0")/common.sh"
vm_id=$1 template=$2 disk_dir=$3 work=$4
disk="$disk_dir/$vm_id.qcow2"
seed="$disk_dir/$vm_id-cidata.iso"

existing=$(domain_state "$vm_id")
[ -z "$existing" ] || fail "capsul $vm_id already exists"
[ -f "$template" ] || fail "there is no template image $template"
[ ! -e "$disk" ] || fail "$disk already exists"
[ ! -e "$seed" ] || fail "$seed already exists"

made_files= defined=
undo() {
  if [ -n "$defined" ]; then
    "$virsh" destroy "$vm_id" >/dev/null 2>&1 || true
    "$virsh" undefine --nvram "$vm_id" >/dev/null 2>&1 || true
  fi
  if [ -n "$made_files" ]; then rm -f "$disk" "$seed"; fi
}
trap 'status=$?; [ "$status" -eq 0 ] || undo; exit "$status"' EXIT
trap 'exit 143' TERM INT

made_files=1
qemu-img create -f qcow2 -F qcow2 -b "$template" "$disk" >/dev/null
if command -v cloud-localds >/dev/null 2>&1; then
  cloud-localds "$seed" "$work/user-data" "$work/meta-data"
else
  genisoimage -quiet -output "$seed" -volid cidata -joliet -rock "$work/user-data" "$work/meta-data"
fi
"$virsh" define "$work/domain.xml" >/dev/null
defined=1
"$virsh" start "$vm_id" >/dev/null
