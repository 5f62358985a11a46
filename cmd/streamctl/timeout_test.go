package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// stuckServer answers no ListTopics: an agent whose etcd is away holds calls as long as
// their callers wait.
type stuckServer struct {
	pb.UnimplementedStreamHouseServer
}

func (stuckServer) ListTopics(ctx context.Context, _ *pb.ListTopicsRequest) (*pb.ListTopicsResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestCommandsEndAtTheirTimeout(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterStreamHouseServer(srv, stuckServer{})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	var out strings.Builder
	root := newRoot(strings.NewReader(""), &out)
	root.SetArgs([]string{"--addr", lis.Addr().String(), "--timeout", "300ms", "topic", "list"})
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "did not answer ListTopics within 300ms (--timeout)") {
			t.Fatalf("topic list against an agent that does not answer: %v", err)
		}
		t.Logf("ended after %v: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(10 * time.Second):
		t.Fatal("topic list with --timeout 300ms still waiting after 10 s")
	}
}
