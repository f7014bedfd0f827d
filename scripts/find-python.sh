#!/usr/bin/env bash
# Prints the path of an installed CPython of the version given, for the development venv
# (the Makefile asks for the images' own: Debian trixie's 3.13). uv would download one it
# can't find, which fails where only the package registries answer; this finds what is
# installed, and says what to install where nothing fits.
#
#   bash scripts/find-python.sh 3.13
#
# Looks on PATH (pythonX.Y, then python3), then in pyenv's versions, newest first. Each
# candidate is run: a pyenv shim is on PATH but fails when no pyenv version selects it.
set -Eeuo pipefail

want=${1:-}
if ! [[ $want =~ ^3\.[0-9]+$ ]]; then
  echo "usage: find-python.sh MAJOR.MINOR (for example 3.13)" >&2
  exit 2
fi

# The version, with "t" for a free-threaded build (its wheels are not the ones we lock).
version_of() {
  "$1" -c 'import sys, sysconfig
print("%d.%d%s" % (*sys.version_info[:2], "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""))' \
    2>/dev/null
}

candidates=()
IFS=: read -r -a path_dirs <<<"${PATH:-}"
for name in "python$want" python3; do
  for dir in "${path_dirs[@]}"; do
    candidates+=("${dir:-.}/$name")
  done
done
pyenv_versions=${PYENV_ROOT:-$HOME/.pyenv}/versions
if [ -d "$pyenv_versions" ]; then
  while IFS= read -r version; do
    candidates+=("$pyenv_versions/$version/bin/python$want")
  done < <(find "$pyenv_versions" -mindepth 1 -maxdepth 1 -name "$want*" -printf '%f\n' | sort -V -r)
fi

for candidate in "${candidates[@]}"; do
  if [ -f "$candidate" ] && [ -x "$candidate" ] && [ "$(version_of "$candidate")" = "$want" ]; then
    echo "$candidate"
    exit 0
  fi
done

cat >&2 <<EOF
find-python: no CPython $want on PATH or in $pyenv_versions; install one, then run this again:
  pyenv:      pyenv install $want
  Debian:     the python$want package (on Debian trixie, python3 is 3.13)
  elsewhere:  this system's Python $want package, or \`uv python install $want\` where uv can
              download
EOF
exit 1
