package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// An agent that is not there is named, with how to reach one, not told as gRPC's dump of
// its dial error.
func TestAnUnreachableAgentIsNamed(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	root, c := newRoot(strings.NewReader(""), &strings.Builder{})
	root.SetArgs([]string{"--addr", addr, "topic", "list"})
	err = root.ExecuteContext(context.Background())
	if err == nil {
		t.Fatal("topic list against no agent succeeded")
	}
	got := describe(err, c.addr)
	if !strings.HasPrefix(got, "cannot reach an agent at "+addr) || strings.Contains(got, "rpc error") {
		t.Fatalf("told %q", got)
	}
}

// A status wrapped in what the command was doing is told once, by its code and message,
// the context kept; an error that is no status is told as it is.
func TestAStatusIsToldOnce(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{status.Error(codes.NotFound, "topic t not found"), "NotFound: topic t not found"},
		{fmt.Errorf("commit the offsets of g: %w", status.Error(codes.Unavailable, "no owner")), "commit the offsets of g: Unavailable: no owner"},
		{fmt.Errorf("read stdin: %w", context.Canceled), "read stdin: context canceled"},
	} {
		if got := describe(c.err, "localhost:50051"); got != c.want {
			t.Errorf("%v told as %q, want %q", c.err, got, c.want)
		}
	}
}
