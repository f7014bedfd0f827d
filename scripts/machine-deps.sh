#!/usr/bin/env bash
# The one list of what this machine needs from Debian's archive, by purpose, and
# the one place that installs it. Idempotent: installs only what is missing.
#
#   bash scripts/machine-deps.sh GROUP...
#
# Groups:
#   docker  the Docker engine (make docker, make up, make test)
#   images  building stand-in base images where no registry answers
#   lint    shellcheck (make lint; ruff, mypy and hadolint come from the venv)
#   test    every server and tool the test suite starts (make test)
#   venv    what the development venv compiles: python-ldap (FAB's LDAP logins) has no
#           wheel on PyPI and builds against OpenLDAP's and Cyrus SASL's headers
#   uv      the uv installer the development venv is made with (not a Debian package)
#
# As root on Debian or Ubuntu it installs what is missing; anywhere else it prints
# the exact command to run and exits 1, before anything uses the missing pieces.
set -Eeuo pipefail

declare -A GROUP=(
  [docker]="docker.io"
  [images]="debootstrap"
  [lint]="shellcheck"
  [venv]="gcc libc6-dev libldap-dev libsasl2-dev"
  # Servers the integration, image and end-to-end tests start on 127.0.0.1 or on
  # their own Docker networks, and the tools the image build and tests run.
  # slapd and ldap-utils: the LDAP directory the login tests start.
  # chromium: the headless browser the OIDC login tests drive (through Playwright).
  [test]="docker.io debootstrap redis-server postgresql openssh-server docker-registry git make openssl ca-certificates python3 python3-venv slapd ldap-utils chromium"
)

if [ "$#" -eq 0 ]; then
  echo "usage: machine-deps.sh GROUP... (groups: ${!GROUP[*]} uv)" >&2
  exit 2
fi

want_uv=0
packages=()
for group in "$@"; do
  if [ "$group" = uv ]; then
    want_uv=1
  elif [ -n "${GROUP[$group]+set}" ]; then
    read -r -a listed <<<"${GROUP[$group]}"
    packages+=("${listed[@]}")
  else
    echo "machine-deps: unknown group '$group' (groups: ${!GROUP[*]} uv)" >&2
    exit 2
  fi
done

missing=()
for pkg in "${packages[@]}"; do
  case " ${missing[*]} " in *" $pkg "*) continue ;; esac
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "machine-deps: missing Debian packages: ${missing[*]}" >&2
    if command -v apt-get >/dev/null 2>&1; then
      echo "machine-deps: install them as root, then run this again:" >&2
      echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    else
      echo "machine-deps: this is not Debian or Ubuntu; install the equivalents of these" \
        "packages with this system's package manager, then run this again" >&2
    fi
    exit 1
  fi
  echo "machine-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$want_uv" = 1 ] && ! command -v uv >/dev/null 2>&1; then
  # Debian's python3 has no pip for the system (PEP 668): uv goes into a venv of its own.
  if [ "$(id -u)" = 0 ]; then
    prefix=/opt/uv bin_dir=/usr/local/bin
  else
    prefix=${XDG_DATA_HOME:-$HOME/.local/share}/airflow-ecs/uv bin_dir=$HOME/.local/bin
  fi
  echo "machine-deps: installing uv into $prefix"
  python3 -m venv "$prefix"
  cert=${PIP_CERT:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-}}}
  "$prefix/bin/pip" install --quiet ${cert:+--cert "$cert"} uv
  mkdir -p "$bin_dir"
  ln -sf "$prefix/bin/uv" "$bin_dir/uv"
  if ! command -v uv >/dev/null 2>&1; then
    echo "machine-deps: uv is installed as $bin_dir/uv, which is not on PATH; add $bin_dir to PATH" >&2
    exit 1
  fi
fi
