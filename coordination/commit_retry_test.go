package coordination_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/coordination"
)

// TestCommitRetryAfterItsSegmentWasRewritten: a commit applied by etcd whose answer was
// lost, and whose segment key the compactor rewrote before the retry (it reads the index
// from etcd, so it may merge, link or expire a segment the writer has not heard back
// about), is recognised as applied by its retry, not reported fenced: a fenced commit
// stops the partition and fails the producers of records etcd holds.
func TestCommitRetryAfterItsSegmentWasRewritten(t *testing.T) {
	// armed holds what to do after the next transaction is applied, before its answer
	// is dropped.
	var armed atomic.Pointer[func()]
	loseAnswer := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		_, txn := req.(*etcdserverpb.TxnRequest)
		then := armed.Load()
		if !txn || then == nil || !armed.CompareAndSwap(then, nil) {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
			return err
		}
		(*then)()
		return status.Error(codes.Unavailable, "injected: the answer was lost")
	}
	e, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(loseAnswer)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	c := clientOn(t, e, "/commit-retry")
	mustTopic(t, c, "t", 1)
	s := mustSession(t, c, "a", 0)
	ctx := ctxT(t)
	l := mustAcquire(t, s, "t", 0)
	if _, err := l.Commit(ctx, segment(0, 10, 0)); err != nil {
		t.Fatal(err)
	}
	// The compactor's stand-in: expiring segment 10 as retention would (its key gone).
	other := etcdClient(t, etcd.Endpoint)
	expire := func() {
		if _, err := other.Delete(ctx, c.Keys().Segment("t", 0, 10)); err != nil {
			t.Error(err)
		}
	}
	armed.Store(&expire)
	rev, err := l.Commit(ctx, segment(10, 10, 0))
	if err != nil {
		t.Fatalf("a commit applied, its segment expired and its answer lost: %v", err)
	}
	if armed.Load() != nil {
		t.Fatal("the commit's first attempt did not go through the interceptor")
	}
	hwm, err := other.Get(ctx, c.Keys().HWM("t", 0))
	if err != nil || len(hwm.Kvs) != 1 || string(hwm.Kvs[0].Value) != "20" || hwm.Kvs[0].ModRevision != rev {
		t.Fatalf("high-water mark %v (%v), the commit's revision %d", hwm.Kvs, err, rev)
	}
	// A fresh commit that meets the same high-water mark without an attempt lost is
	// still fenced: its segment was never applied.
	var fe *coordination.FenceError
	if _, err := l.Commit(ctx, segment(13, 7, 0)); !errors.As(err, &fe) || fe.HWM != 20 {
		t.Fatalf("a commit ending at the high-water mark it did not write: %v, want a FenceError", err)
	}

	// Applied, its answer lost, and before the retry the lease passed to a new owner that
	// rewrote the segment: nothing left in etcd tells whether the attempt was applied, and
	// a FenceError ("nothing was written") would be wrong.
	next := mustSession(t, c, "b", 0)
	takeOver := func() {
		if err := s.Close(ctx); err != nil { // the old owner's session ends
			t.Error(err)
		}
		if _, err := next.Acquire(ctx, "t", 0); err != nil {
			t.Error(err)
			return
		}
		if _, err := other.Delete(ctx, c.Keys().Segment("t", 0, 20)); err != nil { // its compactor's rewrite
			t.Error(err)
		}
	}
	armed.Store(&takeOver)
	_, err = l.Commit(ctx, segment(20, 10, 0))
	if errors.Is(err, coordination.ErrFenced) || !errors.Is(err, coordination.ErrOutcomeUnknown) {
		t.Fatalf("a commit applied, its answer lost and the partition taken over: %v, want ErrOutcomeUnknown", err)
	}
}
