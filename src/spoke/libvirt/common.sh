# Sourced by the other scripts: strict mode, the C locale (virsh's messages are matched below), the virsh binary.
set -eu
export LC_ALL=C
virsh=${VIRSH:-virsh}

fail() {
  printf '%s\n' "$*" >&2
  exit 1
}

# virsh_unless <expected> <virsh arguments…>: runs virsh, also succeeding when it fails saying <expected>
# ("not running" when stopping a stopped domain): a repeated operation is not an error.
virsh_unless() {
  expected=$1
  shift
  if err=$("$virsh" "$@" 2>&1 >/dev/null); then return 0; fi
  case $err in *"$expected"*) return 0 ;; esac
  printf '%s\n' "$err" >&2
  return 1
}

# domain_state <vm id>: prints its state ("running", "shut off", …), or nothing when there is no such domain.
# Any other failure (libvirtd down, permissions) fails: it must never pass for "not there".
domain_state() {
  err_file=$(mktemp)
  if state=$("$virsh" domstate "$1" 2>"$err_file"); then
    rm -f "$err_file"
    printf '%s\n' "$state"
    return 0
  fi
  err=$(cat "$err_file")
  rm -f "$err_file"
  case $err in *"failed to get domain"* | *"Domain not found"*) return 0 ;; esac
  printf '%s\n' "$err" >&2
  return 1
}
