# Shared by the model-server benchmarks (sourced; sets no shell options).
# shellcheck shell=bash

# private_binary: builds the static release model-server (unless SKIP_BUILD is set), then
# runs from a private copy in $WORK, so a concurrent build into the same target directory
# cannot swap it. Reads TARGET, BINARY and WORK; sets BINARY_SHOWN (what was built) and
# BINARY (the copy). Needs log().
private_binary() {
  if [ -z "${SKIP_BUILD:-}" ]; then
    log "building the static release binary (first build takes minutes: fat LTO)"
    RUSTFLAGS='-C target-feature=+crt-static' cargo build -q --release -p model-server --target "$TARGET"
  fi
  [ -x "$BINARY" ] || { log "no binary at $BINARY"; exit 1; }
  cp "$BINARY" "$WORK/model-server"
  # shellcheck disable=SC2034 # read by the scripts that source this file
  BINARY_SHOWN=$BINARY
  BINARY=$WORK/model-server
}
