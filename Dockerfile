# syntax=docker/dockerfile:1
# xpcompute's four Lambda functions (api, slice, fit, coordinator) as one container image.
#
# Why an image: the runtime dependency set (numpy, scipy, pyarrow, duckdb, ...) is about 600 MB unpacked, and a
# Lambda zip with its layers may hold 250 MB; an image may hold 10 GB. serverless.yml points each function at this
# image with its own handler as the command. Build and push: infra/README.md ("Deploying to AWS").
#
#   docker build --platform linux/amd64 -t xpcompute-lambda .
#
# Stage 1 builds the xpcompute wheel, C++ module included, on manylinux_2_28 (glibc 2.28, which Amazon Linux 2023's
# glibc 2.34 loads). Stage 2 is the AWS Lambda Python base image with the runtime dependencies from
# infra/aws/requirements.txt, that wheel and the handlers: no compiler, no dev or test packages.
# Python 3.12 because the 3.12 base image is Amazon Linux 2023: the 3.11 one is Amazon Linux 2 (glibc 2.26), for
# which numpy 2.3+ and pyarrow publish no wheels. tests/integration/test_lambda_image.py reads PYTHON_VERSION here.
ARG PYTHON_VERSION=3.12

FROM quay.io/pypa/manylinux_2_28_x86_64 AS build
ARG PYTHON_VERSION
# Eigen (header-only) is in AlmaLinux 8's powertools repository; cmake and gcc-toolset come with the image
RUN dnf install -y --enablerepo=powertools eigen3-devel && dnf clean all
WORKDIR /src
COPY pyproject.toml CMakeLists.txt README.md ./
COPY cpp ./cpp
COPY shared/xpcompute ./shared/xpcompute
RUN set -eux; \
    tag="cp$(echo "${PYTHON_VERSION}" | tr -d .)"; \
    py="/opt/python/${tag}-${tag}/bin/python"; \
    "${py}" -m pip wheel --no-deps --wheel-dir /tmp/dist .; \
    auditwheel repair --plat manylinux_2_28_x86_64 --wheel-dir /wheelhouse /tmp/dist/xpcompute-*.whl; \
    "${py}" -c "import sys, zipfile, glob; names = zipfile.ZipFile(glob.glob('/wheelhouse/*.whl')[0]).namelist(); \
sys.exit(0 if any(n.startswith('xpcompute/_core.') for n in names) else 'the wheel has no C++ module')"

FROM public.ecr.aws/lambda/python:${PYTHON_VERSION}
# the runtime dependency set, as wheels only (the test installs the same set the same way)
COPY infra/aws/requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir --only-binary=:all: --target "${LAMBDA_TASK_ROOT}" -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY --from=build /wheelhouse/ /tmp/wheelhouse/
RUN pip install --no-cache-dir --no-deps --target "${LAMBDA_TASK_ROOT}" /tmp/wheelhouse/xpcompute-*.whl \
    && rm -r /tmp/wheelhouse \
    && PYTHONPATH="${LAMBDA_TASK_ROOT}" python -c "import xpcompute._core, xpcompute.api.app, xpcompute.coordinator.events"
COPY functions/ ${LAMBDA_TASK_ROOT}/functions/
# bytecode now: Lambda's file system is read-only, so an uncompiled handler would be compiled on every cold start
RUN python -m compileall -q "${LAMBDA_TASK_ROOT}/functions"
ENV XPCOMPUTE_MODE=serverless
# serverless.yml sets the command per function; this default is the API
CMD ["functions/api/handler.handler"]
