package cluster_test

import (
	"context"
	"path"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/stats"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// A client that asks for gzip, as gRPC clients may, gets its answers uncompressed: the
// read budget counts an answer until it is written, which it could not do for one gRPC
// compressed, and compressing would cost the agent more than sending. The client's
// requests, compressed, are read all the same.
func TestAnswersAreNotCompressed(t *testing.T) {
	tc := newCluster(t, 0, 0)
	a := tc.addAgent("gzip-1", "zone-a", 0)
	var payloads payloadSizes
	conn, err := grpc.NewClient(a.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name)), grpc.WithStatsHandler(&payloads))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := pb.NewStreamHouseClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "gzip", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	p := int32(0)
	req := &pb.ProduceRequest{Topic: "gzip", Partition: &p}
	for i := range 64 {
		req.Records = append(req.Records, &pb.Record{Value: harness.RandomText(1024, uint64(i))})
	}
	harness.Eventually(t, 30*time.Second, func() error { _, err := c.Produce(ctx, req); return err })
	if sent := payloads.of("Produce", false); len(sent) == 0 || sent[0].compressed >= sent[0].length {
		t.Fatalf("the produce request was not sent compressed: %+v", sent)
	}

	fetched, err := c.Fetch(ctx, &pb.FetchRequest{Topic: "gzip", Partition: 0, Offset: 0, MaxBytes: 1 << 20})
	if err != nil || len(fetched.Records) < 64 { // more if a retried produce had been written
		t.Fatalf("fetch: %d records, %v", len(fetched.GetRecords()), err)
	}
	stream, err := c.Subscribe(ctx, &pb.SubscribeRequest{Topic: "gzip", Partition: 0, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := stream.Recv(); err != nil || len(got.Records) == 0 {
		t.Fatalf("subscribe: %v", err)
	}
	// The answers, each over 64 KiB of text that gzip makes three quarters of its size.
	for _, method := range []string{"Fetch", "Subscribe"} {
		got := payloads.of(method, true)
		if len(got) == 0 {
			t.Fatalf("no %s answer seen", method)
		}
		if p := got[0]; p.length < 64<<10 || p.compressed != p.length {
			t.Errorf("%s: an answer of %d bytes came as %d: compressed", method, p.length, p.compressed)
		}
	}
}

// payloadSizes is a client stats handler that keeps the sizes of the messages its
// connection sent and received, by method.
type payloadSizes struct {
	mu   sync.Mutex
	seen map[payloadKey][]payloadSize
}

type payloadKey struct {
	method string // the last element of its full name
	in     bool
}

type payloadSize struct{ length, compressed int }

type methodKey struct{}

func (s *payloadSizes) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, methodKey{}, path.Base(info.FullMethodName))
}
func (s *payloadSizes) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (s *payloadSizes) HandleConn(context.Context, stats.ConnStats) {}

func (s *payloadSizes) HandleRPC(ctx context.Context, st stats.RPCStats) {
	method, _ := ctx.Value(methodKey{}).(string)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[payloadKey][]payloadSize{}
	}
	switch p := st.(type) {
	case *stats.InPayload:
		k := payloadKey{method, true}
		s.seen[k] = append(s.seen[k], payloadSize{p.Length, p.CompressedLength})
	case *stats.OutPayload:
		k := payloadKey{method, false}
		s.seen[k] = append(s.seen[k], payloadSize{p.Length, p.CompressedLength})
	}
}

// of returns the sizes of the messages of a method, received (in) or sent.
func (s *payloadSizes) of(method string, in bool) []payloadSize {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[payloadKey{method, in}]
}
