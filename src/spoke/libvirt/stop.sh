#!/bin/sh
# stop.sh <vm id>: asks the guest to shut down (ACPI); it is stopped once the guest has done so.
. "$(dirname "$0")/common.sh"
virsh_unless "not running" shutdown "$1"
