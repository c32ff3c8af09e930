#!/bin/sh
# Container entrypoint: initialise the server on first start, then run it.
#
# First start (no smpfast.ini in $SMPFAST_DATA): `smpfast init` from the environment:
#   ADDR                    (required) the server's public IP address or host name
#   PASS                    password to create queues; empty or unset: none; `random`: random
#   SMPFAST_PORT            port(s) to serve, comma-separated (default 5223)
#   SMPFAST_BIND            listen address written to smpfast.ini (default :: for public ADDR)
#   SMPFAST_SIGN_ALGORITHM  ED25519 (default) or ED448
# Later starts use the volume as it is (the variables above are ignored: the identity, and
# so the address, never changes). Arguments are passed on to `smpfast start`.
#   SMPFAST_DATA            the data directory, a volume (default /var/opt/smpfast)
set -eu

data="${SMPFAST_DATA:-/var/opt/smpfast}"

# In a function, so that `set --` leaves the script's arguments (for `start`) alone.
initialise() {
  addr="${ADDR:-}"
  case "$addr" in
    '')
      echo 'smpfast: error: set the ADDR environment variable to the server IP address or host name' >&2
      exit 1 ;;
    *:*)
      # IPv6 address
      set -- --ip "$addr" ;;
    *[!0-9.]*)
      # Host name: the certificate and address use it; listen on every interface.
      case "$addr" in
        *.*) set -- --fqdn "$addr" --ip :: ;;
        *)
          echo "smpfast: error: ADDR=$addr is neither an IP address nor a host name such as smp.example.org" >&2
          exit 1 ;;
      esac ;;
    *)
      # IPv4 address
      set -- --ip "$addr" ;;
  esac
  pass="${PASS:-}"
  smpfast init --yes --dir "$data" --port "${SMPFAST_PORT:-5223}" --password "${pass:-none}" \
    --sign-algorithm "${SMPFAST_SIGN_ALGORITHM:-ED25519}" "$@"
  if [ -n "${SMPFAST_BIND:-}" ]; then
    sed -i "s|^bind = .*|bind = ${SMPFAST_BIND}|" "$data/smpfast.ini"
  fi
}

if [ ! -f "$data/smpfast.ini" ]; then
  initialise
fi

# exec: the server replaces this shell, so the signals the container gets reach it.
exec smpfast start --dir "$data" "$@"
