# GPU image for `sparsect batch` (array/GPU jobs) and `sparsect app` (the comparison page).
#   docker build -t sparsect .
#   docker run --rm --gpus all -v "$PWD/in:/data/in:ro" -v "$PWD/out:/data/out" sparsect \
#       batch /data/in /data/out --views 60 --method fbp,lrnn
#   docker run --rm --gpus all -p 8501:8501 sparsect app --host 0.0.0.0
# Official PyTorch CUDA runtime image: torch with CUDA comes from the base, everything else from pyproject.
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SPARSECT_PORT=8501

WORKDIR /opt/sparsect
COPY pyproject.toml README.md __init__.py lazy_exports.py ./
COPY operators ./operators
COPY reconstruct ./reconstruct
COPY data ./data
COPY app ./app

# The same `pip install` of the project CI runs (dependencies from pyproject, DICOM decoders included),
# with the `distributed` extra for `--executor ray`; the base image's CUDA torch satisfies torch>=2.1.
# DL3013 (pin versions) does not apply: this installs the project itself; pyproject states its ranges.
# hadolint ignore=DL3013
RUN python -m pip install --no-cache-dir ".[distributed]" \
    && python -c "import sparsect.app.cli, sparsect.app.batch.command, pylibjpeg, openjpeg, libjpeg, ray, torch; print(torch.__version__)"

RUN groupadd --system --gid 10001 sparsect \
    && useradd --system --uid 10001 --gid sparsect --create-home --home-dir /home/sparsect sparsect \
    && mkdir -p /data/in /data/out \
    && chown sparsect:sparsect /data/out

USER 10001:10001
WORKDIR /home/sparsect
VOLUME ["/data/in", "/data/out"]
EXPOSE 8501

# App mode: Streamlit's health endpoint; batch mode is always healthy (watch its exit code instead).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["python", "-m", "sparsect.app.healthcheck"]

ENTRYPOINT ["sparsect"]
CMD ["--help"]
