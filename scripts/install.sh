#!/usr/bin/env bash
# The one install path for tfscale: `make`, CI, the Dockerfile and the Apptainer definition all run this.
#
#   scripts/install.sh            # Debian packages (when root), .venv, a pinned stack, Horovod (MPI + Gloo)
#
# Idempotent and fast on an installed machine: Debian packages are checked with dpkg before apt runs,
# the Horovod wheel is built once per (Python, TF, Horovod, patches) and cached, and a stamp of the inputs
# skips pip entirely when nothing changed. Environment:
#   TFSCALE_VENV   where the virtualenv goes        (default: <repo>/.venv)
#   TFSCALE_CACHE  where built wheels are cached    (default: ~/.cache/tfscale)
#   TFSCALE_TF     the stack, scripts/stacks/tf<X>.txt: 2.21 (default; Python 3.11-3.13) or 2.18 (3.11 only)
#   PYTHON         interpreter to build the venv on (default: python3 when it is 3.11, 3.12 or 3.13, else
#                  the newest python3.13/3.12/3.11 on PATH)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${TFSCALE_VENV:-$repo/.venv}
cache=${TFSCALE_CACHE:-$HOME/.cache/tfscale}
horovod_version=0.28.1
stack=$repo/scripts/stacks/tf${TFSCALE_TF:-2.21}.txt
patches=("$repo/scripts/patches/horovod-$horovod_version"/*.patch)
# TFSCALE_EXTRAS=test (what `make test` sets) adds pyproject.toml's test extra: pytest, hadolint, spython.
extras=${TFSCALE_EXTRAS:+[$TFSCALE_EXTRAS]}

say() { printf '[install] %s\n' "$*"; }

[[ -f $stack ]] || { say "no stack TFSCALE_TF=${TFSCALE_TF:-}: scripts/stacks/ has $(cd "$repo/scripts/stacks" && echo tf*.txt)" >&2; exit 1; }
tf_version=$(sed -n 's/^tensorflow==//p' "$stack")

# --- The interpreter: 3.11, 3.12 or 3.13 (TensorFlow 2.21's range, less 3.10), with venv, ensurepip and
# the headers Horovod compiles against.
usable() { "$1" -c 'import sys, venv, ensurepip, sysconfig, os; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 13) and os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")))' 2>/dev/null; }
version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none; }
refuse_python() { say "$1 is $(version_of "$2"): need 3.11, 3.12 or 3.13 with venv and its headers" >&2; exit 1; }

# --- Debian packages: Open MPI for Horovod's MPI controller, a C++ toolchain and cmake to build it, and the
# allocators scripts/cpu_env.sh preloads on request (TFSCALE_MALLOC=jemalloc|tcmalloc).
# An entry "a|b" is one package under two names: tcmalloc is libtcmalloc-minimal4t64 since the 64-bit time_t
# transition (Ubuntu 24.04, Debian 13), libtcmalloc-minimal4 before (Debian 12).
debian_packages=(openmpi-bin libopenmpi-dev build-essential cmake git patch libjemalloc2
                 "libtcmalloc-minimal4t64|libtcmalloc-minimal4")
# The test extra also runs a one-node Slurm cluster (tests/slurm_cluster.py) to start the TF backend with srun.
[[ ${TFSCALE_EXTRAS:-} == *test* ]] && debian_packages+=(slurmctld slurmd slurm-client munge)
python=${PYTHON:-}
if [[ -z $python ]]; then
  for candidate in python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null && usable "$candidate"; then python=$candidate; break; fi
  done
fi
if [[ -z $python ]]; then
  case $(version_of python3) in
    3.11 | 3.12 | 3.13)  # the distro's python3 without its venv or dev package: Debian/Ubuntu split them off
      python=python3 debian_packages+=(python3-venv python3-dev) ;;
    none)  # a bare image (debian:12, ubuntu:24.04): the distro's own python3, checked once it is installed
      python=python3 debian_packages+=(python3 python3-venv python3-dev) ;;
    *) say "need Python 3.11, 3.12 or 3.13 with venv and its headers (python3 here is $(version_of python3));" \
         "install one, or set PYTHON=/path/to/python3.1x" >&2
       exit 1 ;;
  esac
elif [[ -n ${PYTHON:-} ]] && ! usable "$python"; then
  refuse_python "PYTHON=$python" "$python"  # before apt: nothing to install can fix the user's choice
fi
installed() {
  local name
  for name in ${1//|/ }; do
    dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q 'install ok installed' && return 0
  done
  return 1
}
missing=()
for package in "${debian_packages[@]}"; do
  installed "$package" || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    say "missing Debian packages: ${missing[*]} (run as root, or install them first)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  names=()
  for package in "${missing[@]}"; do  # of "a|b", the first name this distro has
    for name in ${package//|/ }; do
      if apt-cache policy "$name" 2>/dev/null | grep -q 'Candidate: [^(]'; then break; fi
    done
    names+=("$name")
  done
  say "apt-get install ${names[*]}"
  apt-get install -y -qq --no-install-recommends "${names[@]}" >/dev/null
fi
usable "$python" || refuse_python "$python" "$python"

# --- The virtualenv and the pinned stack.
if [[ ! -x $venv/bin/python ]]; then
  say "creating $venv with $($python --version)"
  "$python" -m venv "$venv"
fi
vpy=$venv/bin/python
py_version=$(version_of "$vpy")
py_tag=cp${py_version/./}
case $py_version in 3.11 | 3.12 | 3.13) ;; *) say "need Python 3.11, 3.12 or 3.13; $vpy is $py_version" >&2; exit 1 ;; esac
# TF 2.18's tf_keras passes floats to random.randint, which Python 3.12 refuses (every model build fails;
# seen here), and TF 2.18 has no 3.13 wheels: the old stack is Python 3.11 only.
if [[ $tf_version == 2.18.* && $py_version != 3.11 ]]; then
  say "TensorFlow $tf_version runs on Python 3.11 only (tf_keras 2.18 breaks on $py_version): use TFSCALE_TF=2.21, or a 3.11 venv" >&2
  exit 1
fi

# The stamp holds the inputs' hash and the extras installed with them: a venv with the test extra also
# serves a command that asks for none (`make test` then `make demo` reinstalled everything before).
stamp=$venv/.tfscale-install-stamp
want_stamp=$(cat "$repo/pyproject.toml" "$0" "$stack" "${patches[@]}" | sha256sum | cut -c1-16)
have_stamp='' have_extras=''
[[ -f $stamp ]] && read -r have_stamp have_extras <"$stamp" || true
if [[ $have_stamp == "$want_stamp" && ( -z $extras || $have_extras == "$extras" ) ]] &&
   "$vpy" -c 'import horovod.tensorflow' 2>/dev/null; then
  say "stack already installed ($want_stamp${have_extras:+ $have_extras})"
else
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  say "installing pyproject.toml under ${stack#"$repo"/} and tfscale itself, editable${extras:+, with $extras}"
  "$vpy" -m pip install -q --upgrade pip==24.3.1 setuptools==75.6.0 wheel==0.45.1
  "$vpy" -m pip install -q -c "$stack" -e "$repo$extras"

  # Horovod compiles its TF ops against the installed TF, so the cache key carries every input that
  # changes the binary: Python, TF, Horovod and the patches applied to its release.
  patch_key=$(cat "${patches[@]}" | sha256sum | cut -c1-8)
  wheel_dir=$cache/wheels/horovod-$horovod_version-$py_tag-tf$tf_version-patches$patch_key
  if ! compgen -G "$wheel_dir/horovod-$horovod_version-*.whl" >/dev/null; then
    say "building horovod $horovod_version with MPI + Gloo against TF $tf_version on Python $py_version" \
        "(about 4 minutes), with ${#patches[@]} patches from scripts/patches/horovod-$horovod_version/"
    source_dir=$(mktemp -d)
    trap 'rm -rf "$source_dir"' EXIT
    "$vpy" -m pip download -q --no-deps --no-binary :all: -d "$source_dir" "horovod==$horovod_version"
    tar -xzf "$source_dir/horovod-$horovod_version.tar.gz" -C "$source_dir"
    for patch_file in "${patches[@]}"; do
      patch -s -p1 --forward --fuzz=0 -d "$source_dir/horovod-$horovod_version" <"$patch_file"
    done
    mkdir -p "$wheel_dir"
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 \
    HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
    MAKEFLAGS="-j$(nproc)" \
      "$vpy" -m pip wheel -q --no-build-isolation --no-deps --no-cache-dir \
        -w "$wheel_dir.partial" "$source_dir/horovod-$horovod_version"
    mv "$wheel_dir.partial"/horovod-*.whl "$wheel_dir/" && rmdir "$wheel_dir.partial"
  else
    say "horovod wheel from cache: $wheel_dir"
  fi
  "$vpy" -m pip install -q --force-reinstall --no-deps "$wheel_dir"/horovod-$horovod_version-*.whl
  # Horovod's runtime dependencies (cloudpickle, psutil, pyyaml, packaging) come from the wheel's metadata.
  "$vpy" -m pip install -q -c "$stack" "$(ls "$wheel_dir"/horovod-$horovod_version-*.whl)"
  # What the wheel was built with is fixed once installed: checked here, before the stamp says so (it costs
  # ≈ 15 s of TensorFlow imports, which an installed venv no longer pays on every make).
  say "horovodrun --check-build"
  check_build=$("$venv/bin/horovodrun" --check-build)
  echo "$check_build"
  for needed in '\[X\] TensorFlow' '\[X\] MPI' '\[X\] Gloo'; do
    grep -q "$needed" <<<"$check_build" || { say "horovod lacks ${needed//\\/}" >&2; exit 1; }
  done
  echo "$want_stamp $extras" > "$stamp"
fi

say "ok: $venv"
