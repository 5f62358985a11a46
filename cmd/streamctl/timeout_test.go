package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// stuckServer answers no ListTopics: an agent whose etcd is away holds calls as long as
// their callers wait. With early set it ends each call itself, DeadlineExceeded, that
// long before the deadline the client sent: its own copy of the deadline firing first
// (what gRPC's server does when its timer runs ahead of the client's), or, when early is
// most of the call, a deadline of the server's own.
type stuckServer struct {
	pb.UnimplementedStreamHouseServer
	early time.Duration
}

func (s stuckServer) ListTopics(ctx context.Context, _ *pb.ListTopicsRequest) (*pb.ListTopicsResponse, error) {
	if deadline, ok := ctx.Deadline(); ok && s.early > 0 {
		select {
		case <-time.After(time.Until(deadline.Add(-s.early))):
			return nil, status.Error(codes.DeadlineExceeded, "context deadline exceeded")
		case <-ctx.Done():
		}
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// listTopicsAgainst runs `streamctl --timeout 300ms topic list` against srv and returns
// its error.
func listTopicsAgainst(t *testing.T, srv stuckServer) error {
	t.Helper()
	addr := fakeAgent(t, srv)

	var out strings.Builder
	root, _ := newRoot(strings.NewReader(""), &out)
	root.SetArgs([]string{"--addr", addr, "--timeout", "300ms", "topic", "list"})
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(context.Background()) }()
	select {
	case err := <-done:
		t.Logf("ended after %v: %v", time.Since(start).Round(time.Millisecond), err)
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("topic list with --timeout 300ms still waiting after 10 s")
		return nil
	}
}

const ranOutMessage = "did not answer ListTopics within 300ms (--timeout)"

func TestCommandsEndAtTheirTimeout(t *testing.T) {
	if err := listTopicsAgainst(t, stuckServer{}); err == nil || !strings.Contains(err.Error(), ranOutMessage) {
		t.Fatalf("topic list against an agent that does not answer: %v", err)
	}
}

// The server's copy of the deadline fired a few milliseconds before the client's: the
// call still ran out of --timeout, and says so (CI saw "stream terminated by RST_STREAM").
func TestTimeoutNamedWhenTheServersDeadlineFiresFirst(t *testing.T) {
	if err := listTopicsAgainst(t, stuckServer{early: 5 * time.Millisecond}); err == nil || !strings.Contains(err.Error(), ranOutMessage) {
		t.Fatalf("topic list whose deadline fired first on the server: %v", err)
	}
}

// A DeadlineExceeded the server returns long before --timeout is its own, and is not
// reported as --timeout.
func TestServersOwnDeadlineKeepsItsMessage(t *testing.T) {
	err := listTopicsAgainst(t, stuckServer{early: 250 * time.Millisecond})
	if err == nil || strings.Contains(err.Error(), "--timeout") || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("topic list whose server timed out on its own after 50ms: %v", err)
	}
}

// fakeAgent serves srv as an agent's API on a local port until the test ends, and returns
// its address.
func fakeAgent(t *testing.T, srv pb.StreamHouseServer) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pb.RegisterStreamHouseServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}
