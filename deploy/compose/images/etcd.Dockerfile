# etcd and etcdctl built from the etcd v3.6.16 modules that go.mod pins, at the paths the
# official image uses.
FROM scratch
COPY etcd etcdctl /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/etcd"]
