package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/actors"
	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/coordination"
	"github.com/streamhouse/streamhouse/gateway/membudget"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// Limits bound what one request may carry. Zero fields take the documented defaults.
type Limits struct {
	// MaxRecordBytes bounds one record's key + value + headers, each header counting
	// partitionpb.HeaderOverhead besides its key and value. Default 1 MiB.
	MaxRecordBytes int
	// MaxBatchBytes bounds the records of one produce request. Default 16 MiB.
	MaxBatchBytes int
	// MaxBatchRecords bounds the records of one produce request. Default 100000.
	MaxBatchRecords int
	// MaxFetchBytes caps what one fetch returns (larger asks are lowered). Default 16 MiB.
	MaxFetchBytes int
	// DefaultFetchBytes answers a fetch that asks for 0 bytes. Default 1 MiB.
	DefaultFetchBytes int
}

// WithDefaults returns l with every zero field set to its documented default.
func (l Limits) WithDefaults() Limits {
	if l.MaxRecordBytes <= 0 {
		l.MaxRecordBytes = 1 << 20
	}
	if l.MaxBatchBytes <= 0 {
		l.MaxBatchBytes = 16 << 20
	}
	if l.MaxBatchRecords <= 0 {
		l.MaxBatchRecords = 100000
	}
	if l.MaxFetchBytes <= 0 {
		l.MaxFetchBytes = 16 << 20
	}
	if l.DefaultFetchBytes <= 0 {
		l.DefaultFetchBytes = 1 << 20
	}
	return l
}

// MaxMessageBytes is the gRPC message size the server must accept for these limits.
func (l Limits) MaxMessageBytes() int {
	l = l.WithDefaults()
	return max(l.MaxBatchBytes, l.MaxFetchBytes) + 1<<20
}

// Server implements the streamhouse.v1 API on one agent.
type Server struct {
	pb.UnimplementedStreamHouseServer
	coord  *coordination.Client
	mirror *coordination.Mirror
	node   *actors.Node
	limits Limits
	reads  *membudget.Budget // the agent's read budget, shared with its Kafka listener
	log    *zap.Logger
	rr     atomic.Uint32 // round robin for records without key or partition

	stopping chan struct{} // closed by Stopping: Subscribe streams end
	stopOnce sync.Once
	health   atomic.Pointer[health.Server] // Register's
}

// NewServer serves the API through node, reading metadata from mirror. Its fetches count
// in reads (nil: a budget of its own of DefaultMaxReadBytes; NewReadBudget) until their
// answers are written, which only a gRPC server built with grpcmem.ServerOptions gives
// back.
func NewServer(coord *coordination.Client, mirror *coordination.Mirror, node *actors.Node, limits Limits,
	reads *membudget.Budget, log *zap.Logger) *Server {
	if log == nil {
		log = zap.NewNop()
	}
	if reads == nil {
		reads = NewReadBudget(0)
	}
	return &Server{coord: coord, mirror: mirror, node: node, limits: limits.WithDefaults(), reads: reads, log: log,
		stopping: make(chan struct{})}
}

// Stopping ends the Subscribe streams the agent serves, and those that come after,
// Unavailable ("subscribe again"): they would go on retrying their fetches through a
// node that has left, and hold the agent's graceful stop until its shutdown timeout.
// Their clients subscribe again through another agent. Health says NOT_SERVING from
// then on, so that a load balancer sends new requests elsewhere.
func (s *Server) Stopping() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		if hs := s.health.Load(); hs != nil {
			hs.Shutdown() // NOT_SERVING, and no membership change says otherwise
		}
	})
}

// Register adds the service, the standard health service and server reflection to g.
// Health is SERVING while the agent is a member of the cluster, NOT_SERVING while it
// rejoins after losing its session (its requests are then answered Unavailable), so
// that a load balancer checking it sends them elsewhere.
func (s *Server) Register(g *grpc.Server) *health.Server {
	pb.RegisterStreamHouseServer(g, s)
	hs := health.NewServer()
	s.node.ObserveMembership(func(joined bool) {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if joined {
			st = healthpb.HealthCheckResponse_SERVING
		}
		hs.SetServingStatus("", st)
		hs.SetServingStatus(pb.StreamHouse_ServiceDesc.ServiceName, st)
	})
	healthpb.RegisterHealthServer(g, hs)
	s.health.Store(hs)
	reflection.Register(g)
	return hs
}

// sentinelPackages takes the package names out of the errors a client is told.
var sentinelPackages = strings.NewReplacer("coordination: ", "", "actors: ", "")

// statusOf maps an error to the gRPC status a client acts on.
func statusOf(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, coordination.ErrInvalidArgument), errors.Is(err, actors.ErrInvalidArgument):
		code = codes.InvalidArgument
	case errors.Is(err, coordination.ErrTopicExists):
		code = codes.AlreadyExists
	case errors.Is(err, coordination.ErrTopicNotFound), errors.Is(err, coordination.ErrPartitionNotFound):
		code = codes.NotFound
	case errors.Is(err, coordination.ErrOffsetOutOfRange):
		code = codes.OutOfRange
	case errors.Is(err, coordination.ErrTopicChanged):
		code = codes.Aborted // lost to other changes of the topic every time: retry
	case errors.Is(err, coordination.ErrGroupClaimed):
		code = codes.FailedPrecondition // until the group's coordinator lets it go
	case errors.Is(err, actors.ErrBackpressure):
		code = codes.ResourceExhausted
	case errors.Is(err, actors.ErrUnavailable):
		code = codes.Unavailable
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	// The code says what the sentinel's package prefix would ("coordination: invalid
	// argument: topic t: ..." is told as "invalid argument: topic t: ...").
	return status.Error(code, sentinelPackages.Replace(err.Error()))
}

func codeOf(c partitionpb.Code) codes.Code {
	switch c {
	case partitionpb.Code_CODE_OK:
		return codes.OK
	case partitionpb.Code_CODE_INVALID_ARGUMENT:
		return codes.InvalidArgument
	case partitionpb.Code_CODE_OUT_OF_RANGE:
		return codes.OutOfRange
	case partitionpb.Code_CODE_RESOURCE_EXHAUSTED:
		return codes.ResourceExhausted
	case partitionpb.Code_CODE_NOT_FOUND:
		return codes.NotFound
	case partitionpb.Code_CODE_DATA_LOSS:
		return codes.DataLoss
	default:
		return codes.Unavailable
	}
}

// topic returns a live topic, from the mirror or, for one created a moment ago, etcd.
func (s *Server) topic(ctx context.Context, name string) (coordination.TopicSpec, error) {
	if err := coordination.ValidateTopicName(name); err != nil {
		return coordination.TopicSpec{}, statusOf(err)
	}
	if spec, ok := s.mirror.Topic(name); ok {
		return spec, nil
	}
	spec, err := s.coord.Topic(ctx, name)
	return spec, statusOf(err)
}

func (s *Server) partition(ctx context.Context, topic string, partition int32) (coordination.TopicSpec, error) {
	spec, err := s.topic(ctx, topic)
	if err != nil {
		return spec, err
	}
	if partition < 0 || partition >= spec.Partitions {
		return spec, status.Errorf(codes.NotFound, "topic %s has partitions 0..%d, not %d", topic, spec.Partitions-1, partition)
	}
	return spec, nil
}

func (s *Server) client() (*actors.Client, error) {
	if c := s.node.Client(); c != nil {
		return c, nil
	}
	return nil, status.Error(codes.Unavailable, "this agent is rejoining the cluster; retry")
}

func topicOf(t coordination.TopicSpec) *pb.Topic {
	return &pb.Topic{Name: t.Name, Partitions: t.Partitions, RetentionMs: t.RetentionMs, LingerMs: t.LingerMs,
		SegmentBytes: t.SegmentBytes, CreatedAtMs: t.CreatedAt.UnixMilli(), RetentionBytes: t.RetainBytes(), MergeBytes: t.MergeTarget()}
}

// CreateTopic implements the API.
func (s *Server) CreateTopic(ctx context.Context, req *pb.CreateTopicRequest) (*pb.Topic, error) {
	spec, err := s.coord.CreateTopic(ctx, coordination.TopicSpec{Name: req.Name, Partitions: req.Partitions,
		RetentionMs: req.RetentionMs, LingerMs: req.LingerMs, SegmentBytes: req.SegmentBytes,
		RetentionBytes: req.RetentionBytes, MergeBytes: req.MergeBytes})
	if err != nil {
		return nil, statusOf(err)
	}
	s.log.Info("topic created", zap.String("topic", spec.Name), zap.Int32("partitions", spec.Partitions))
	return topicOf(spec), nil
}

// AlterTopic implements the API.
func (s *Server) AlterTopic(ctx context.Context, req *pb.AlterTopicRequest) (*pb.Topic, error) {
	spec, err := s.coord.AlterTopic(ctx, req.Name, coordination.TopicChanges{RetentionMs: req.RetentionMs, RetentionBytes: req.RetentionBytes,
		LingerMs: req.LingerMs, SegmentBytes: req.SegmentBytes, MergeBytes: req.MergeBytes})
	if err != nil {
		return nil, statusOf(err)
	}
	s.log.Info("topic altered", zap.String("topic", spec.Name), zap.Int64("retention_ms", spec.RetentionMs),
		zap.Int64("retention_bytes", spec.RetainBytes()), zap.Int64("linger_ms", spec.LingerMs),
		zap.Int64("segment_bytes", spec.SegmentBytes), zap.Int64("merge_bytes", spec.MergeTarget()))
	return topicOf(spec), nil
}

// DeleteTopic implements the API.
func (s *Server) DeleteTopic(ctx context.Context, req *pb.DeleteTopicRequest) (*pb.DeleteTopicResponse, error) {
	if err := s.coord.DeleteTopic(ctx, req.Name); err != nil {
		return nil, statusOf(err)
	}
	return &pb.DeleteTopicResponse{}, nil
}

// ListTopics implements the API.
func (s *Server) ListTopics(ctx context.Context, _ *pb.ListTopicsRequest) (*pb.ListTopicsResponse, error) {
	topics, err := s.coord.Topics(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	out := &pb.ListTopicsResponse{}
	for _, t := range topics {
		out.Topics = append(out.Topics, topicOf(t))
	}
	return out, nil
}

// DescribeTopic implements the API.
func (s *Server) DescribeTopic(ctx context.Context, req *pb.DescribeTopicRequest) (*pb.DescribeTopicResponse, error) {
	spec, err := s.topic(ctx, req.Name)
	if err != nil {
		return nil, err
	}
	out := &pb.DescribeTopicResponse{Topic: topicOf(spec)}
	owned := s.ownersStats(ctx, spec)
	for i := range spec.Partitions {
		p := coordination.Partition{Topic: spec.Name, Partition: i}
		info := &pb.PartitionInfo{Partition: i}
		if o, ok := s.mirror.Owner(p); ok {
			info.Owner, info.Zone, info.Address, info.Epoch = o.Node, o.Zone, o.Addr, o.Epoch
		}
		st := owned[i]
		if st == nil { // its owner could not say: read its index from etcd
			read, err := s.coord.PartitionStats(ctx, p.Topic, p.Partition)
			if err != nil {
				return nil, statusOf(err)
			}
			st = &read
		}
		info.HighWaterMark, info.LogStartOffset, info.Segments, info.StoredBytes = st.HWM, st.LogStart, st.Segments, st.StoredBytes
		out.Partitions = append(out.Partitions, info)
	}
	return out, nil
}

// ownerStatsWait bounds how long DescribeTopic waits for the partitions' owners (and at
// most half of what its caller left it), before it reads the index of those that did
// not answer from etcd.
const ownerStatsWait = 2 * time.Second

// maxOwnerStatsAsked bounds the owners a describe asks at once.
const maxOwnerStatsAsked = 64

// ownersStats asks the owner of every partition that has one, at once, for its log's
// shape, from the view of its index it keeps for retention and merges
// (actors.Client.Stats): reading a partition's whole index from etcd for each describe
// grows with its retention (thousands of keys a partition). A partition is left nil when
// it has no owner, or its owner did not answer in time, could not say, or answered for
// an epoch older than the lease the mirror knows (an activation that lost its lease).
func (s *Server) ownersStats(ctx context.Context, spec coordination.TopicSpec) []*coordination.PartitionStats {
	out := make([]*coordination.PartitionStats, spec.Partitions)
	c, err := s.client()
	if err != nil {
		return out
	}
	wait := ownerStatsWait
	if deadline, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(deadline)/2)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var wg sync.WaitGroup
	asking := make(chan struct{}, maxOwnerStatsAsked)
	for i := range spec.Partitions {
		p := coordination.Partition{Topic: spec.Name, Partition: i}
		o, ok := s.mirror.Owner(p)
		if !ok {
			continue
		}
		select {
		case asking <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return out // the rest from etcd
		}
		wg.Go(func() {
			defer func() { <-asking }()
			resp, err := c.Stats(ctx, p)
			if err == nil && resp.Stats && resp.Code == partitionpb.Code_CODE_OK && resp.Epoch >= o.Epoch {
				out[i] = &coordination.PartitionStats{LogStart: resp.LogStartOffset, HWM: resp.HighWaterMark, Segments: resp.Segments, StoredBytes: resp.StoredBytes}
			}
		})
	}
	wg.Wait()
	return out
}

// ClusterStatus implements the API: members with zones and the partitions each owns.
func (s *Server) ClusterStatus(ctx context.Context, _ *pb.ClusterStatusRequest) (*pb.ClusterStatusResponse, error) {
	// An agent rejoining the cluster knows no members: it would show none.
	if _, err := s.client(); err != nil {
		return nil, err
	}
	out := &pb.ClusterStatusResponse{}
	byNode := map[string]*pb.Member{}
	for _, m := range s.node.Members() {
		hosts := false
		for _, k := range m.Kinds {
			hosts = hosts || k == actors.PartitionKind
		}
		if !hosts {
			continue // a client-only member
		}
		mem := &pb.Member{Node: m.Node, Zone: m.Zone, Address: m.Address}
		byNode[m.Node] = mem
		out.Members = append(out.Members, mem)
	}
	owned := map[coordination.Partition]bool{}
	for _, o := range s.mirror.Owners() {
		owned[o.Partition] = true
		if mem, ok := byNode[o.Node]; ok {
			mem.Partitions = append(mem.Partitions, &pb.Assignment{Topic: o.Topic, Partition: o.Partition.Partition, Epoch: o.Epoch})
		}
	}
	for _, t := range s.mirror.Topics() {
		out.Topics++
		out.Partitions += t.Partitions
		for i := range t.Partitions {
			if !owned[coordination.Partition{Topic: t.Name, Partition: i}] {
				out.Unowned++
			}
		}
	}
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].Node < out.Members[j].Node })
	return out, nil
}

// Produce implements the API. Records are grouped by partition and sent concurrently; the
// response holds every record's partition and offset, in request order.
func (s *Server) Produce(ctx context.Context, req *pb.ProduceRequest) (*pb.ProduceResponse, error) {
	spec, err := s.topic(ctx, req.Topic)
	if err != nil {
		return nil, err
	}
	if err := s.checkBatch(req); err != nil {
		return nil, err
	}
	if req.Partition != nil && (*req.Partition < 0 || *req.Partition >= spec.Partitions) {
		return nil, status.Errorf(codes.NotFound, "topic %s has partitions 0..%d, not %d", spec.Name, spec.Partitions-1, *req.Partition)
	}
	// Group by partition, remembering each record's place in the request; its ack says
	// not written until its partition has written it.
	groups := map[int32][]int{}
	acks := make([]*pb.RecordAck, len(req.Records))
	rr := int32(s.rr.Add(1) % uint32(spec.Partitions))
	if req.RequestId != 0 { // a re-send goes where the first attempt went
		rr = int32(actors.Mix64(req.RequestId) % uint64(spec.Partitions))
	}
	for i, r := range req.Records {
		p := rr
		switch {
		case req.Partition != nil:
			p = *req.Partition
		case r.Key != nil:
			p = PartitionForKey(r.Key, spec.Partitions)
		}
		groups[p] = append(groups[p], i)
		acks[i] = &pb.RecordAck{Partition: p, Offset: pb.NotAcked}
	}
	c, err := s.client()
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for p, idx := range groups {
		wg.Go(func() {
			recs := make([]*partitionpb.Record, len(idx))
			for j, i := range idx {
				r := req.Records[i]
				pr := &partitionpb.Record{TimestampMs: r.TimestampMs, Key: r.Key, Value: r.Value}
				for _, h := range r.Headers {
					pr.Headers = append(pr.Headers, &partitionpb.Header{Key: h.Key, Value: h.Value})
				}
				recs[j] = pr
			}
			resp, err := c.ProduceRequest(ctx, &partitionpb.ProduceRequest{Topic: spec.Name, Partition: p, Records: recs, RequestId: req.RequestId,
				TopicIncarnation: spec.Incarnation})
			switch {
			case err == nil && resp.Code != partitionpb.Code_CODE_OK:
				err = status.Errorf(codeOf(resp.Code), "partition %d: %s", p, resp.Message)
			case err == nil && int(resp.Count) != len(recs):
				// Only a request id given to other records can bring this: never ack records
				// at offsets that hold others.
				err = status.Errorf(codes.InvalidArgument, "partition %d answered %d records for request id %d, the request has %d",
					p, resp.Count, req.RequestId, len(recs))
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if first == nil {
					first = err
				}
				return
			}
			for j, i := range idx {
				acks[i].Offset = resp.BaseOffset + int64(j)
			}
		})
	}
	wg.Wait()
	if first != nil {
		return nil, partlyWritten(statusOf(first), acks)
	}
	return &pb.ProduceResponse{Acks: acks}, nil
}

func (s *Server) checkBatch(req *pb.ProduceRequest) error {
	if len(req.Records) == 0 {
		return status.Error(codes.InvalidArgument, "produce of no records")
	}
	if len(req.Records) > s.limits.MaxBatchRecords {
		return status.Errorf(codes.InvalidArgument, "%d records in one request, at most %d", len(req.Records), s.limits.MaxBatchRecords)
	}
	total := 0
	for i, r := range req.Records {
		size := len(r.Key) + len(r.Value) + len(r.Headers)*partitionpb.HeaderOverhead
		for _, h := range r.Headers {
			size += len(h.Key) + len(h.Value)
		}
		if size > s.limits.MaxRecordBytes {
			return status.Error(codes.InvalidArgument, partitionpb.TooLargeMessage(i, size, s.limits.MaxRecordBytes))
		}
		if r.Offset != 0 || r.Partition != 0 {
			return status.Errorf(codes.InvalidArgument, "record %d sets offset or partition, which the server assigns (use the request's partition)", i)
		}
		total += size
	}
	if total > s.limits.MaxBatchBytes {
		return status.Errorf(codes.InvalidArgument, "request carries %d bytes of records, at most %d", total, s.limits.MaxBatchBytes)
	}
	return nil
}

// ProduceStream implements the API: one response per request, in order.
func (s *Server) ProduceStream(stream grpc.BidiStreamingServer[pb.ProduceRequest, pb.ProduceResponse]) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil // the client closed its side
		}
		if err != nil {
			return err // a message too large or undecodable, or the stream gone: not OK
		}
		resp, err := s.Produce(stream.Context(), req)
		if err != nil {
			return err
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

// CommitOffsets implements the API.
func (s *Server) CommitOffsets(ctx context.Context, req *pb.CommitOffsetsRequest) (*pb.CommitOffsetsResponse, error) {
	offsets := map[coordination.Partition]coordination.GroupOffset{}
	for _, o := range req.Offsets {
		p := coordination.Partition{Topic: o.Topic, Partition: o.Partition}
		if _, dup := offsets[p]; dup {
			return nil, status.Errorf(codes.InvalidArgument, "%s appears twice", p)
		}
		offsets[p] = coordination.GroupOffset{Offset: o.Offset, Metadata: o.Metadata}
	}
	if err := s.coord.CommitOffsets(ctx, req.Group, offsets); err != nil {
		return nil, statusOf(err)
	}
	return &pb.CommitOffsetsResponse{}, nil
}

// FetchOffsets implements the API.
func (s *Server) FetchOffsets(ctx context.Context, req *pb.FetchOffsetsRequest) (*pb.FetchOffsetsResponse, error) {
	got, err := s.coord.FetchOffsets(ctx, req.Group)
	if err != nil {
		return nil, statusOf(err)
	}
	out := &pb.FetchOffsetsResponse{}
	for p, o := range got {
		out.Offsets = append(out.Offsets, &pb.PartitionOffset{Topic: p.Topic, Partition: p.Partition, Offset: o.Offset,
			Metadata: o.Metadata, CommittedAtMs: o.CommittedAt.UnixMilli()})
	}
	sort.Slice(out.Offsets, func(i, j int) bool {
		a, b := out.Offsets[i], out.Offsets[j]
		return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
	})
	return out, nil
}

// ListGroups implements the API.
func (s *Server) ListGroups(ctx context.Context, _ *pb.ListGroupsRequest) (*pb.ListGroupsResponse, error) {
	groups, err := s.coord.Groups(ctx)
	if err != nil {
		return nil, statusOf(err)
	}
	return &pb.ListGroupsResponse{Groups: groups}, nil
}

// maxNamedPartitions bounds the partitions a partly written Produce's message names.
const maxNamedPartitions = 32

// partlyWritten adds to a refused Produce's status the partitions its other records were
// written to, and every record's ack (pb.PartlyWritten), so that a client does not send
// the records written again.
func partlyWritten(err error, acks []*pb.RecordAck) error {
	written := map[int32]bool{}
	for _, a := range acks {
		if a.Offset != pb.NotAcked {
			written[a.Partition] = true
		}
	}
	if len(written) == 0 {
		return err
	}
	ps := slices.Sorted(maps.Keys(written))
	st := status.Convert(err)
	names := fmt.Sprint(ps)
	if len(ps) > maxNamedPartitions { // the message goes in a trailer too
		names = fmt.Sprintf("%v and %d more", ps[:maxNamedPartitions], len(ps)-maxNamedPartitions)
	}
	return pb.PartlyWritten(status.Newf(st.Code(), "%s (records to partitions %s were written)", st.Message(), names), acks)
}
