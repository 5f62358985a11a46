package coordination

import (
	"context"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Scan is scan, for the package's tests.
func (c *Client) Scan(ctx context.Context, prefix string, rev int64, fn func(*mvccpb.KeyValue) error) (int64, error) {
	return c.scan(ctx, prefix, rev, fn)
}

// Crash stops the session's keep-alive without revoking its lease, as an agent killed
// outright does: the lease and its keys stay until the TTL runs out.
func (s *Session) Crash() { s.cancel() }
