package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// recordingServer counts the writes it is sent and keeps the last commit.
type recordingServer struct {
	pb.UnimplementedStreamHouseServer
	writes atomic.Int32
	commit atomic.Pointer[pb.CommitOffsetsRequest]
}

func (s *recordingServer) Produce(context.Context, *pb.ProduceRequest) (*pb.ProduceResponse, error) {
	s.writes.Add(1)
	return &pb.ProduceResponse{}, nil
}

func (s *recordingServer) DescribeTopic(_ context.Context, req *pb.DescribeTopicRequest) (*pb.DescribeTopicResponse, error) {
	if req.Name == "gone" {
		return nil, status.Error(codes.NotFound, "topic gone: deleted")
	}
	d := &pb.DescribeTopicResponse{Topic: &pb.Topic{Name: req.Name, Partitions: 4}}
	for p := range int32(4) {
		d.Partitions = append(d.Partitions, &pb.PartitionInfo{Partition: p, HighWaterMark: 10})
	}
	return d, nil
}

func (s *recordingServer) FetchOffsets(context.Context, *pb.FetchOffsetsRequest) (*pb.FetchOffsetsResponse, error) {
	return &pb.FetchOffsetsResponse{Offsets: []*pb.PartitionOffset{{Topic: "orders", Partition: 1, Offset: 4}, {Topic: "gone", Partition: 0, Offset: 1}}}, nil
}

func (s *recordingServer) CommitOffsets(_ context.Context, req *pb.CommitOffsetsRequest) (*pb.CommitOffsetsResponse, error) {
	s.writes.Add(1)
	s.commit.Store(req)
	return &pb.CommitOffsetsResponse{}, nil
}

// TestCommandsRefuseWhatTheyCannotMean: a command whose flags would do something other
// than its user meant is refused before anything is sent. A group commit without its
// partition or offset moved the group to the start of partition 0; values given both as
// arguments and with --value were written out of the order given; a negative --timeout
// meant no limit; a consume's --from was checked only where it applied, and a partition
// past the topic's was named past its end.
func TestCommandsRefuseWhatTheyCannotMean(t *testing.T) {
	srv := &recordingServer{}
	addr := fakeAgent(t, srv)
	run := func(args ...string) error {
		root, _ := newRoot(strings.NewReader(""), &strings.Builder{})
		root.SetArgs(append([]string{"--addr", addr}, args...))
		return root.ExecuteContext(context.Background())
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"group", "commit", "billing", "--topic", "orders"}, "--partition is required"},
		{[]string{"group", "commit", "billing", "--topic", "orders", "--partition", "2"}, "--offset is required"},
		{[]string{"group", "commit", "billing", "--partition", "2", "--offset", "7"}, "--topic is required"},
		{[]string{"produce", "orders", "a", "--value", "b", "c"}, "not both"},
		{[]string{"--timeout", "-5s", "produce", "orders", "a"}, "--timeout -5s"},
		// With --group, --from applies only where the group has not committed: a typo
		// went unseen.
		{[]string{"consume", "orders", "--group", "g", "--from", "lates"}, `--from "lates"`},
		{[]string{"consume", "orders", "--partition", "9", "--from", "5"}, "--partition 9: orders has partitions 0..3"},
	} {
		if err := run(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("streamctl %s: %v, want an error saying %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	if n := srv.writes.Load(); n != 0 {
		t.Fatalf("refused commands sent %d writes", n)
	}
	if err := run("group", "commit", "billing", "--topic", "orders", "--partition", "2", "--offset", "7"); err != nil {
		t.Fatal(err)
	}
	if c := srv.commit.Load(); c == nil || c.Group != "billing" || len(c.Offsets) != 1 || c.Offsets[0].Partition != 2 || c.Offsets[0].Offset != 7 {
		t.Fatalf("committed %v, want billing orders/2 at 7", c)
	}
	if err := run("produce", "orders", "--value", "a", "--value", "b"); err != nil || srv.writes.Load() != 2 {
		t.Fatalf("produce with --value only: %v, %d writes", err, srv.writes.Load())
	}
}

// TestGroupOffsetsOfADeletedTopicShowNoLag: a group's offsets of a topic deleted (and not
// purged yet) show with no end and no lag, not numbers measured against nothing; the
// others with theirs.
func TestGroupOffsetsOfADeletedTopicShowNoLag(t *testing.T) {
	addr := fakeAgent(t, &recordingServer{})
	var out strings.Builder
	root, _ := newRoot(strings.NewReader(""), &out)
	root.SetArgs([]string{"--addr", addr, "group", "offsets", "g"})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	var rows []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	if want := []string{"orders 1 4 10 6", "gone 0 1 - -"}; strings.Join(rows, "|") != strings.Join(want, "|") {
		t.Fatalf("group offsets %q, want %q", rows, want)
	}
}

// refusingServer acks every record of a request, or refuses the whole request, naming the
// record by its index in the request, when one of its values is "bad".
type refusingServer struct {
	pb.UnimplementedStreamHouseServer
}

func (refusingServer) Produce(_ context.Context, req *pb.ProduceRequest) (*pb.ProduceResponse, error) {
	resp := &pb.ProduceResponse{}
	for i, r := range req.Records {
		if string(r.Value) == "bad" {
			return nil, status.Errorf(codes.InvalidArgument, "record %d has a bad value", i)
		}
		resp.Acks = append(resp.Acks, &pb.RecordAck{Offset: int64(i)})
	}
	return resp, nil
}

// A line the server refuses is named by the lines of its request, not only by its index
// in that request, which a user reading a file of thousands of lines could not place: the
// error says which lines were not written and how many before them were acked, as many as
// the acks printed.
func TestProduceOfARefusedLineSaysWhichLines(t *testing.T) {
	addr := fakeAgent(t, refusingServer{})
	const lines, bad = 2500, 2000
	var in strings.Builder
	for i := 1; i <= lines; i++ {
		v := "good"
		if i == bad {
			v = "bad"
		}
		fmt.Fprintln(&in, v)
	}
	out := &strings.Builder{}
	root, _ := newRoot(strings.NewReader(in.String()), out)
	root.SetArgs([]string{"--addr", addr, "produce", "orders"})
	err := root.ExecuteContext(context.Background())
	var first, last, acked int
	if err == nil {
		t.Fatal("a refused line: no error")
	}
	if _, scanErr := fmt.Sscanf(err.Error(), "lines %d-%d of the input", &first, &last); scanErr != nil {
		t.Fatalf("the error names no lines: %v", err)
	}
	if _, scanErr := fmt.Sscanf(err.Error()[strings.Index(err.Error(), "; the "):], "; the %d lines before were acked", &acked); scanErr != nil {
		t.Fatalf("the error says nothing of the lines acked: %v", err)
	}
	printed := strings.Count(out.String(), "\n")
	if first > bad || last < bad || acked != first-1 || printed != acked {
		t.Fatalf("line %d refused: the error names lines %d-%d and %d acked before, %d acks printed: %v", bad, first, last, acked, printed, err)
	}
	t.Logf("%v", err)
}
