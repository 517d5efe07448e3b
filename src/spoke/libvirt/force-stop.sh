#!/bin/sh
# force-stop.sh <vm id>: pulls the plug.
. "$(dirname "$0")/common.sh"
virsh_unless "not running" destroy "$1"
