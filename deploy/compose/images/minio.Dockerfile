# MinIO built from its pinned module; streamhouse is only there as the health probe (a
# scratch image has no shell or curl).
FROM scratch
COPY minio streamhouse /usr/local/bin/
COPY tmp /tmp
ENV HOME=/data
ENTRYPOINT ["/usr/local/bin/minio"]
