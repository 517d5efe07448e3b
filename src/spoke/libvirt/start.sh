#!/bin/sh
# start.sh <vm id>: starts a defined capsul; one that runs already is left alone.
. "$(dirname "$0")/common.sh"
virsh_unless "already active" start "$1"
