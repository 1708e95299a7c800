# The operator image: `llm-operator run` on python:3.11-slim, as a non-root user.
# Build from the repository root:  docker build -t <image> .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY runtime/ runtime/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /wheels /wheels
# The distribution pins its dependencies (pyproject.toml); the wheel is the only thing installed.
RUN pip install --no-cache-dir /wheels/*.whl \
 && rm -rf /wheels \
 && useradd --uid 65532 --gid 0 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin operator
USER 65532
ENTRYPOINT ["llm-operator", "run"]
