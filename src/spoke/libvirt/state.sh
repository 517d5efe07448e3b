#!/bin/sh
# state.sh <vm id>: its state ("running", "shut off", …), or nothing when there is no such capsul.
. "$(dirname "$0")/common.sh"
domain_state "$1"
