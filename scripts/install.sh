#!/usr/bin/env bash
# The one install path for tfscale: `make`, CI, the Dockerfile and the Singularity definition all run this.
#
#   scripts/install.sh            # Debian packages (when root), .venv, pinned stack, Horovod (MPI + Gloo)
#
# Idempotent and fast on an installed machine: Debian packages are checked with dpkg before apt runs,
# the Horovod wheel is built once per (Python, TF, Horovod) and cached, and a stamp of the inputs skips
# pip entirely when nothing changed. Environment:
#   TFSCALE_VENV   where the virtualenv goes        (default: <repo>/.venv)
#   TFSCALE_CACHE  where built wheels are cached    (default: ~/.cache/tfscale)
#   PYTHON         interpreter to build the venv on (default: python3; must be 3.11)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${TFSCALE_VENV:-$repo/.venv}
cache=${TFSCALE_CACHE:-$HOME/.cache/tfscale}
python=${PYTHON:-python3}
horovod_version=0.28.1
tf_version=$(sed -n 's/^ *"tensorflow==\([0-9.]*\)",/\1/p' "$repo/pyproject.toml")
# TFSCALE_EXTRAS=test (what `make test` sets) adds pyproject.toml's test extra: pytest, hadolint, spython.
extras=${TFSCALE_EXTRAS:+[$TFSCALE_EXTRAS]}

say() { printf '[install] %s\n' "$*"; }

# --- Debian packages: Open MPI for Horovod's MPI controller, a C++ toolchain and cmake to build it, and the
# allocators scripts/cpu_env.sh preloads on request (TFSCALE_MALLOC=jemalloc|tcmalloc).
debian_packages=(openmpi-bin libopenmpi-dev build-essential cmake git libjemalloc2 libtcmalloc-minimal4)
if ! "$python" -c 'import sys, venv, ensurepip, sysconfig, os; sys.exit(not (sys.version_info[:2] == (3, 11) and os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")))' 2>/dev/null; then
  python=python3.11
  debian_packages+=(python3 python3-venv python3-dev)
fi
missing=()
for package in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    say "missing Debian packages: ${missing[*]} (run as root, or install them first)" >&2
    exit 1
  fi
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- The virtualenv and the pinned stack.
if [[ ! -x $venv/bin/python ]]; then
  say "creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
vpy=$venv/bin/python
py_tag=$("$vpy" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
[[ $py_tag == cp311 ]] || { say "need Python 3.11, $vpy is $py_tag" >&2; exit 1; }

stamp=$venv/.tfscale-install-stamp
want_stamp=$( (cat "$repo/pyproject.toml" "$0"; echo "$extras") | sha256sum | cut -c1-16)
if [[ -f $stamp && $(cat "$stamp") == "$want_stamp" ]] && "$vpy" -c 'import horovod.tensorflow' 2>/dev/null; then
  say "stack already installed ($want_stamp)"
else
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  say "installing the pinned stack (pyproject.toml) and tfscale itself, editable${extras:+, with $extras}"
  "$vpy" -m pip install -q --upgrade pip==24.3.1 setuptools==75.6.0 wheel==0.45.1
  "$vpy" -m pip install -q -e "$repo$extras"

  # Horovod compiles its TF ops against the installed TF, so the cache key carries every version
  # that changes the binary.
  wheel_dir=$cache/wheels/horovod-$horovod_version-$py_tag-tf$tf_version
  if ! compgen -G "$wheel_dir/horovod-$horovod_version-*.whl" >/dev/null; then
    say "building horovod $horovod_version with MPI + Gloo against TF $tf_version (about 4 minutes)"
    mkdir -p "$wheel_dir"
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 \
    HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
    MAKEFLAGS="-j$(nproc)" \
      "$vpy" -m pip wheel -q --no-build-isolation --no-deps --no-cache-dir \
        -w "$wheel_dir.partial" "horovod==$horovod_version"
    mv "$wheel_dir.partial"/horovod-*.whl "$wheel_dir/" && rmdir "$wheel_dir.partial"
  else
    say "horovod wheel from cache: $wheel_dir"
  fi
  "$vpy" -m pip install -q --force-reinstall --no-deps "$wheel_dir"/horovod-$horovod_version-*.whl
  # Horovod's runtime dependencies (cloudpickle, psutil, pyyaml, packaging) come from the wheel's metadata.
  "$vpy" -m pip install -q "$(ls "$wheel_dir"/horovod-$horovod_version-*.whl)"
  echo "$want_stamp" > "$stamp"
fi

say "horovodrun --check-build"
check_build=$("$venv/bin/horovodrun" --check-build)
echo "$check_build"
for needed in '\[X\] TensorFlow' '\[X\] MPI' '\[X\] Gloo'; do
  grep -q "$needed" <<<"$check_build" || { say "horovod lacks ${needed//\\/}" >&2; exit 1; }
done
say "ok: $venv"
