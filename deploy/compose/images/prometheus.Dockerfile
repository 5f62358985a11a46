# Prometheus from Debian's package (its binary needs glibc, copied in by images.sh);
# streamhouse is the health probe.
FROM scratch
COPY prometheus/ /
COPY streamhouse /usr/local/bin/
COPY prometheus.yml /etc/prometheus/prometheus.yml
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=:9090"]
