package coordination

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Scan is scan, for the package's tests.
func (c *Client) Scan(ctx context.Context, prefix string, rev int64, fn func(*mvccpb.KeyValue) error) (int64, error) {
	return c.scan(ctx, prefix, rev, fn)
}

// Crash stops the session's keep-alive without revoking its lease, as an agent killed
// outright does: the lease and its keys stay until the TTL runs out.
func (s *Session) Crash() { s.cancel() }

// ApplyProgress hands every prefix's watch a progress notification of revision rev, as
// the etcd client does with one etcd computed before the watches' creation reached it:
// their events up to rev may still be to come.
func (m *Mirror) ApplyProgress(rev int64) {
	for p := range m.ks.prefixes {
		m.ks.apply(p, clientv3.WatchResponse{Header: pb.ResponseHeader{Revision: rev}})
	}
}
