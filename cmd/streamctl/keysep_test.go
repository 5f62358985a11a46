package main

import (
	"context"
	"strings"
	"sync"
	"testing"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// keepingServer keeps the records it is sent and acks them.
type keepingServer struct {
	pb.UnimplementedStreamHouseServer
	mu      sync.Mutex
	records []*pb.Record
}

func (s *keepingServer) Produce(_ context.Context, req *pb.ProduceRequest) (*pb.ProduceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &pb.ProduceResponse{}
	for _, r := range req.Records {
		resp.Acks = append(resp.Acks, &pb.RecordAck{Offset: int64(len(s.records))})
		s.records = append(s.records, r)
	}
	return resp, nil
}

// produceTo runs streamctl produce with args and stdin against srv.
func produceTo(t *testing.T, srv *keepingServer, stdin string, args ...string) error {
	t.Helper()
	addr := fakeAgent(t, srv)
	root, _ := newRoot(strings.NewReader(stdin), &strings.Builder{})
	root.SetArgs(append([]string{"--addr", addr, "produce"}, args...))
	return root.ExecuteContext(context.Background())
}

// With --key-separator each line carries its own key, cut at the first separator (as
// kcat -K); a line without one has no key. With --key too, it is refused before anything
// is sent.
func TestEachLineCarriesItsKey(t *testing.T) {
	srv := &keepingServer{}
	if err := produceTo(t, srv, "customer-1:{\"order\": 1}\nno key here\ncustomer-2::x\n", "orders", "--key-separator", ":"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range srv.records {
		k := "<none>"
		if r.Key != nil {
			k = string(r.Key)
		}
		got = append(got, k+"="+string(r.Value))
	}
	want := []string{`customer-1={"order": 1}`, "<none>=no key here", "customer-2=:x"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("records %q, want %q", got, want)
	}

	srv = &keepingServer{}
	err := produceTo(t, srv, "a:b\n", "orders", "--key-separator", ":", "--key", "k")
	if err == nil || !strings.Contains(err.Error(), "not both") || len(srv.records) != 0 {
		t.Fatalf("--key with --key-separator: %v, %d records sent", err, len(srv.records))
	}
}
