# Sourced by the fakes: appends "--- <program>" and then each argument on its own line to $FAKE_DIR/log.
record() {
  {
    printf -- '--- %s\n' "$1"
    shift
    for arg in "$@"; do printf '%s\n' "$arg"; done
  } >>"$FAKE_DIR/log"
}
