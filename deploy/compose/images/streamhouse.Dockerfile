# The agent image: static binaries on scratch, built on this machine (deploy/compose/images.sh).
FROM scratch
COPY streamhouse streamctl /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/streamhouse"]
CMD ["agent"]
