#!/usr/bin/env bash
# Make the base images the builds need available locally: pull them under their
# upstream names; where a pull fails (no registry reachable, an air-gapped
# builder), build a stand-in from Debian's packages and tag it locally under
# the same name, saying so.
#   debian:trixie-slim: debootstrap --variant=minbase, then docker import.
#   redis, postgres: images/stand-ins/*, FROM that Debian base, with apt.
set -Eeuo pipefail
cd "$(dirname "$0")/.."

DEBIAN_IMAGE=${DEBIAN_IMAGE:-debian:trixie-slim}
DEBIAN_SUITE=${DEBIAN_SUITE:-trixie}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# Debian trixie ships Redis 8.0 and PostgreSQL 17: the stand-ins carry the same major
# versions as the upstream names they stand in for.
REDIS_IMAGE=${REDIS_IMAGE:-redis:8.0}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-postgres:17}

have() { docker image inspect "$1" >/dev/null 2>&1; }

pull_or_false() {
  local image=$1
  echo "base-images: pulling $image"
  if timeout 120 docker pull -q "$image" >/dev/null 2>&1; then
    return 0
  fi
  return 1
}

if have "$DEBIAN_IMAGE"; then
  echo "base-images: $DEBIAN_IMAGE is present"
elif pull_or_false "$DEBIAN_IMAGE"; then
  echo "base-images: pulled $DEBIAN_IMAGE"
else
  echo "base-images: $DEBIAN_IMAGE cannot be pulled; building a stand-in from Debian $DEBIAN_SUITE packages (debootstrap)"
  bash scripts/machine-deps.sh images
  root=$(mktemp -d /tmp/debian-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >/tmp/debootstrap.log 2>&1 \
    || { tail -n 30 /tmp/debootstrap.log >&2; exit 1; }
  # Slim it as the upstream -slim images are (debuerreotype's settings): later package
  # installs leave out docs, man pages and translations, apt keeps no caches and
  # fetches no translated indexes.
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d" "$root/etc/apt/apt.conf.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
CFG
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
  echo 'Acquire::Languages "none";' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  echo 'APT::AutoRemove::SuggestsImportant "false";' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/man/* \
    "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/usr/share/groff/*
  # Security updates too, as upstream's sources.
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
    "$DEBIAN_MIRROR" "$DEBIAN_SUITE" "$DEBIAN_MIRROR" "$DEBIAN_SUITE" \
    "$DEBIAN_SECURITY_MIRROR" "$DEBIAN_SUITE" >"$root/etc/apt/sources.list"
  rm -f "$root"/etc/apt/sources.list.d/debian.sources
  tar -C "$root" -c . | docker import \
    --change 'CMD ["bash"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    - "$DEBIAN_IMAGE" >/dev/null
  echo "base-images: tagged a local stand-in as $DEBIAN_IMAGE (built from Debian packages, not pulled)"
fi

# build_stand_in NAME IMAGE VERSION_COMMAND...
build_stand_in() {
  local name=$1 image=$2
  shift 2
  if have "$image"; then
    echo "base-images: $image is present"
    return 0
  fi
  if pull_or_false "$image"; then
    echo "base-images: pulled $image"
    return 0
  fi
  echo "base-images: $image cannot be pulled; building a stand-in from Debian packages" \
    "(images/stand-ins/$name, FROM $DEBIAN_IMAGE)"
  local started=$SECONDS
  docker build -q --build-arg "BASE_IMAGE=$DEBIAN_IMAGE" -t "$image" "images/stand-ins/$name" \
    >/dev/null
  local version
  version=$(docker run --rm --entrypoint "$1" "$image" "${@:2}" 2>/dev/null | head -n 1 || true)
  echo "base-images: tagged a local stand-in as $image in $(( SECONDS - started )) s" \
    "(not the upstream image; it runs: ${version:-unknown version})"
}

build_stand_in redis "$REDIS_IMAGE" redis-server --version
build_stand_in postgres "$POSTGRES_IMAGE" postgres --version
