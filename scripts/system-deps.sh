#!/usr/bin/env bash
# Debian/Ubuntu packages imprint needs outside Python: the OpenGL libraries of the
# CPU renderer of Objaverse objects (imprint.ingest.render, pyrender over OSMesa or EGL).
#
# Idempotent: installs only what is missing. As root it runs apt-get itself (one
# `apt-get update`, then `apt-get install -y ...`); otherwise it prints the exact
# command to run (a warning: only the Objaverse renderer needs them). `make install` calls it.
#
#   scripts/system-deps.sh            install what is missing (root) or say how
#   scripts/system-deps.sh --check    only report; exit 1 when something is missing
set -euo pipefail

# libosmesa6: off-screen Mesa (PYOPENGL_PLATFORM=osmesa), works everywhere, no display or GPU.
# libegl1 + libgl1 + libegl-mesa0: EGL (PYOPENGL_PLATFORM=egl), a little faster, and GPUs where present.
PACKAGES=(libosmesa6 libegl1 libgl1 libegl-mesa0)

check_only=0
case "${1:-}" in
  --check) check_only=1 ;;
  "") ;;
  -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
  *) echo "system-deps.sh: unknown argument $1 (use --check or nothing)" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "system-deps.sh: not a Debian/Ubuntu system (no dpkg-query); install by hand the OSMesa library"
  echo "  (libOSMesa.so, e.g. 'mesa-libOSMesa' on Fedora) or EGL + GL (libEGL.so.1, libGL.so.1)."
  exit 0
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "system-deps.sh: all present (${PACKAGES[*]})"
  exit 0
fi

cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $check_only -eq 1 ]]; then
  echo "system-deps.sh: missing ${missing[*]}; run as root: $cmd" >&2
  exit 1
fi
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo "system-deps.sh: installing ${missing[*]} with sudo"
    sudo env DEBIAN_FRONTEND=noninteractive sh -c "$cmd"
    exit 0
  fi
  # Not fatal: only the Objaverse renderer needs them, and it says so when they are missing.
  echo "system-deps.sh: WARNING: missing ${missing[*]} (needed to render Objaverse); run as root:" >&2
  echo "  sudo sh -c '$cmd'" >&2
  exit 0
fi
echo "system-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "system-deps.sh: installed ${missing[*]}"
