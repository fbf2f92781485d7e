# Minimal image: official PyTorch runtime + the pinned stack. No custom CUDA ops to build.
FROM pytorch/pytorch:2.6.0-cuda12.4-cudnn9-runtime
ENV PYTHONUNBUFFERED=1 WANDB_MODE=offline
WORKDIR /workspace/gp3d
COPY requirements.txt constraints.txt pyproject.toml ./
RUN pip install --no-cache-dir -r requirements.txt -c constraints.txt
COPY . .
RUN pip install --no-cache-dir --no-deps -e . && python tools/install_torchvision_compat.py
CMD ["python", "-m", "gp3d.train"]
