package cluster_test

import (
	"context"
	"encoding/binary"
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

// TestFetchOfSmallRecordsFitsTheAnswerLimit: a fetch of 16 MiB (the most max_bytes gives)
// over records of 50 bytes, each ~20 more encoded, is answered within the server's
// message limit, ending early, and the next fetch goes on from where it ended: every
// record is read once. Before, the answer's 23 MiB could not be sent, the same fetch
// failed again and again, and the reader could not get past that offset.
func TestFetchOfSmallRecordsFitsTheAnswerLimit(t *testing.T) {
	tc := newCluster(t, 0, 0)
	a := tc.addAgent("small-1", "zone-a", 0)
	conn, err := grpc.NewClient(a.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := pb.NewStreamHouseClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := c.CreateTopic(ctx, &pb.CreateTopicRequest{Name: "small", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	const total, perRequest, size = 400_000, 50_000, 50 // 20 MB of records
	p := int32(0)
	for n := 0; n < total; n += perRequest {
		req := &pb.ProduceRequest{Topic: "small", Partition: &p}
		for i := range perRequest {
			v := make([]byte, size)
			binary.BigEndian.PutUint64(v, uint64(n+i))
			req.Records = append(req.Records, &pb.Record{Value: v})
		}
		harness.Eventually(t, 30*time.Second, func() error { _, err := c.Produce(ctx, req); return err })
	}
	next, fetches := int64(0), 0
	for next < total {
		resp, err := c.Fetch(ctx, &pb.FetchRequest{Topic: "small", Partition: 0, Offset: next, MaxBytes: 16 << 20})
		if err != nil {
			t.Fatalf("fetch %d from %d: %v", fetches+1, next, err)
		}
		fetches++
		for _, r := range resp.Records {
			if r.Offset != next || binary.BigEndian.Uint64(r.Value) != uint64(next) {
				t.Fatalf("fetch %d: offset %d holds record %d, want %d", fetches, r.Offset, binary.BigEndian.Uint64(r.Value), next)
			}
			next++
		}
		if len(resp.Records) == 0 {
			t.Fatalf("fetch %d from %d: no records below the high-water mark %d", fetches, next, resp.HighWaterMark)
		}
	}
	if fetches < 2 {
		t.Fatalf("%d records of %d bytes read in %d fetches: the answer was not bounded", total, size, fetches)
	}
}
