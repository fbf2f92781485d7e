# gp3d for NVIDIA GPUs. One torch only: PyPI's torch==2.13.0 wheel for Linux is the CUDA build and
# brings its own CUDA runtime libraries (nvidia-* wheels), so a slim Python base is enough; the
# host supplies the driver (NVIDIA Container Toolkit: `docker run --gpus all`). No custom CUDA ops.
#
#   docker build -t gp3d .
#   docker run --gpus all --rm -v /data:/data -v $PWD/outputs:/workspace/gp3d/outputs gp3d \
#       make train ARGS="data=shards data.path=/data/imagenet_256 experiment=3dgp_imagenet trainer=gpu"
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WANDB_MODE=offline HF_HUB_OFFLINE=1
RUN apt-get update && apt-get install -y --no-install-recommends make git \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 gp3d
WORKDIR /workspace/gp3d
RUN chown gp3d:gp3d /workspace/gp3d
USER gp3d

# The venv `make setup` would create, built once in the image (dependencies first: cached layer).
COPY --chown=gp3d:gp3d requirements.txt constraints.txt pyproject.toml Makefile ./
COPY --chown=gp3d:gp3d tools/ tools/
RUN python -m venv .venv && .venv/bin/pip install -q -r requirements.txt -c constraints.txt
COPY --chown=gp3d:gp3d . .
RUN .venv/bin/pip install -q --no-deps -e . && .venv/bin/python tools/install_torchvision_compat.py \
    && touch .venv/.gp3d-installed
ENV PATH=/workspace/gp3d/.venv/bin:$PATH

# Datasets and run outputs live outside the image.
VOLUME ["/data", "/workspace/gp3d/outputs"]
CMD ["make", "train"]
