# tfscale CPU image: Ubuntu 24.04 (Python 3.12, Open MPI 4.1), TF 2.21 + tf_keras, Horovod 0.28.1 (MPI + Gloo).
# Ubuntu 24.04 rather than Debian 13: its Open MPI is 4.1, the major version tfscale is tested with (Debian 12
# hosts), which the hybrid MPI model needs on both sides; Debian 13 ships Open MPI 5.0, untested here.
# Thin on purpose: scripts/install.sh is the one install path, the same that `make` and CI run, and it
# checks each install with `horovodrun --check-build`, failing the build unless TensorFlow, MPI and Gloo are all there.
#   docker build -t tfscale .
#   docker run --rm tfscale make demo
#   docker run --rm tfscale horovodrun -np 2 -H localhost:2 python -m tfscale.train \
#       --config=configs/demo_digits.py --workdir=/tmp/run
# Runs as an unprivileged user (uid 1000) that owns /opt/tfscale, so `make demo` and `make test` work
# in the container (the image carries pyproject.toml's test extra for that); the virtualenv in /opt/venv
# stays root-owned and read-only. Ubuntu's image ships a user `ubuntu` with that uid; it is removed first.
FROM ubuntu:24.04
ENV DEBIAN_FRONTEND=noninteractive \
    TFSCALE_VENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    TF_USE_LEGACY_KERAS=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /opt/tfscale
COPY . .
RUN TFSCALE_EXTRAS='test' bash scripts/install.sh \
 && rm -rf /root/.cache /var/lib/apt/lists/* \
 && userdel --remove ubuntu \
 && useradd --create-home --uid 1000 --user-group tfscale \
 && chown -R 1000:1000 /opt/tfscale
USER 1000:1000
CMD ["horovodrun", "--check-build"]
