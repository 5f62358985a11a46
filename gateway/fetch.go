package gateway

import (
	"context"
	"math"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	"github.com/streamhouse/streamhouse/gateway/grpcmem"
	"github.com/streamhouse/streamhouse/gateway/membudget"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// maxFetchWaitMs bounds a fetch's long poll whatever the client asks.
const maxFetchWaitMs = 30000

// answerSlack is room in a fetch answer for all but its records (the high-water mark).
const answerSlack = 1 << 10

// maxRecordFraming is the most a record with at most one header takes in an answer beyond
// its bytes: its field's tag and length (6), key's and value's (12), timestamp (11),
// offset (11), partition (6), one header's tags and lengths (18).
const maxRecordFraming = 64

// Fetch implements the API. The answer counts in the agent's read budget from before its
// read until gRPC has written it to the client (grpcmem.HoldUntilWritten).
func (s *Server) Fetch(ctx context.Context, req *pb.FetchRequest) (*pb.FetchResponse, error) {
	out, hold, err := s.fetch(ctx, req, 0)
	if err != nil {
		return nil, err
	}
	grpcmem.HoldUntilWritten(ctx, out, hold)
	return out, nil
}

// fetch reads what req asks for and returns it with the reservation of the read budget
// that accounts it, for the caller to hand on or release. It reads the topic's
// incarnation the caller names, or (0) the one it finds.
func (s *Server) fetch(ctx context.Context, req *pb.FetchRequest, incarnation int64) (*pb.FetchResponse, *membudget.Reservation, error) {
	spec, err := s.partition(ctx, req.Topic, req.Partition)
	if err != nil {
		return nil, nil, err
	}
	if incarnation == 0 {
		incarnation = spec.Incarnation
	} else if spec.Incarnation != incarnation {
		return nil, nil, deletedSince(req.Topic)
	}
	if req.Offset < 0 {
		return nil, nil, status.Errorf(codes.InvalidArgument, "offset %d is negative", req.Offset)
	}
	if req.MaxWaitMs < 0 || req.MaxBytes < 0 {
		return nil, nil, status.Error(codes.InvalidArgument, "max_bytes and max_wait_ms must not be negative")
	}
	maxBytes := int(req.MaxBytes)
	if maxBytes == 0 {
		maxBytes = s.limits.DefaultFetchBytes
	}
	maxBytes = min(maxBytes, s.limits.MaxFetchBytes)
	c, err := s.client()
	if err != nil {
		return nil, nil, err
	}
	// The read may decode segments the block cache does not keep: it holds up to
	// maxBytes from here.
	hold, err := s.reserveRead(ctx, maxBytes)
	if err != nil {
		return nil, nil, err
	}
	read := &partitionpb.FetchRequest{Topic: req.Topic, Partition: req.Partition, Offset: req.Offset, MaxBytes: int32(maxBytes),
		TopicIncarnation: incarnation}
	resp, err := c.Fetch(ctx, read)
	if wait := min(req.MaxWaitMs, maxFetchWaitMs); wait > 0 && err == nil && resp.Code == partitionpb.Code_CODE_OK && len(resp.Records) == 0 {
		// Nothing to read yet: the long poll holds none of the budget while it waits.
		// What it wakes to was committed a moment ago (the recent buffer holds it,
		// --recent-bytes); its copy on the way to the client is accounted from the
		// answer on, without waiting (the codec grows the reservation to the answer's
		// size), so that the fetches after it wait instead. Long polls that wake at once
		// may pass the budget by an answer each.
		hold.Resize(0)
		read.MaxWaitMs = wait
		resp, err = c.Fetch(ctx, read)
	}
	if err == nil && resp.Code != partitionpb.Code_CODE_OK {
		if resp.Code == partitionpb.Code_CODE_OUT_OF_RANGE {
			err = pb.OutOfRange(resp.Message, resp.LogStartOffset, resp.HighWaterMark)
		} else {
			err = status.Error(codeOf(resp.Code), resp.Message)
		}
	}
	if err != nil {
		hold.Release()
		return nil, nil, statusOf(err)
	}
	// One allocation for all the records (as actors' fromRecords): the GC pays per object.
	out := &pb.FetchResponse{HighWaterMark: resp.HighWaterMark, Records: make([]*pb.Record, len(resp.Records))}
	recs := make([]pb.Record, len(resp.Records))
	// max_bytes counts the records' bytes; each also takes ~20 bytes of framing, and an
	// answer must stay within what the server sends (Limits.MaxMessageBytes): 16 MiB of
	// 100-byte records encode to 19 MiB. The answer ends before the record that would
	// pass it (its client fetches on from there), never before the first.
	room := s.limits.MaxMessageBytes() - answerSlack
	measure := maxBytes+len(resp.Records)*maxRecordFraming > room // else it cannot pass
	for _, r := range resp.Records {
		measure = measure || len(r.Headers) > 1 // more framing than maxRecordFraming counts
	}
	for i, r := range resp.Records {
		rec := &recs[i]
		rec.Key, rec.Value, rec.TimestampMs, rec.Offset, rec.Partition = r.Key, r.Value, r.TimestampMs, r.Offset, req.Partition
		for _, h := range r.Headers {
			rec.Headers = append(rec.Headers, &pb.Header{Key: h.Key, Value: h.Value})
		}
		if !measure {
			out.Records[i] = rec
			continue
		}
		if room -= 1 + protowire.SizeBytes(proto.Size(rec)); room < 0 && i > 0 {
			out.Records = out.Records[:i]
			break
		}
		out.Records[i] = rec
	}
	return out, hold, nil
}

// Subscribe implements the API: a stream of fetches from an offset, long-polling at the
// end. Each answer counts in the read budget until it is written, as Fetch's.
func (s *Server) Subscribe(req *pb.SubscribeRequest, stream grpc.ServerStreamingServer[pb.FetchResponse]) error {
	ctx, ended := grpcmem.HoldsOfStream(stream.Context())
	defer func() {
		if ctx.Err() != nil {
			ended() // reset by its client, or its connection gone: what it queued is dropped
		}
	}()
	offset := req.Offset
	if offset < pb.OffsetEarliest {
		return status.Errorf(codes.InvalidArgument, "offset %d: want -1 (latest), -2 (earliest) or an offset", offset)
	}
	// Every fetch reads the topic subscribed to, not one created since under its name: a
	// stream blocked in Send (a slow client) can outlast a delete, the purge and a create,
	// and its offset would then read the new topic's records.
	subscribed, err := s.partition(ctx, req.Topic, req.Partition)
	if err != nil {
		return err
	}
	// Its fetches end when the stream does, or the agent stops (Stopping).
	fctx, stopFetching := context.WithCancel(ctx)
	defer stopFetching()
	go func() {
		select {
		case <-s.stopping:
		case <-fctx.Done():
		}
		stopFetching()
	}()
	closing := func(err error) error {
		select {
		case <-s.stopping:
			if ctx.Err() == nil {
				return status.Error(codes.Unavailable, "the agent is stopping: subscribe again (another agent serves the partition)")
			}
		default:
		}
		if fctx.Err() != nil {
			return nil // the client went away
		}
		return err
	}
	// fetch is s.fetch, again while the partition moves or the agent's reads wait on
	// slow clients.
	fetch := func(req *pb.FetchRequest) (*pb.FetchResponse, *membudget.Reservation, error) {
		for {
			resp, hold, err := s.fetch(fctx, req, subscribed.Incarnation)
			if c := status.Code(err); c != codes.Unavailable && c != codes.ResourceExhausted || fctx.Err() != nil {
				return resp, hold, err
			}
			select {
			case <-fctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if offset < 0 {
		// A fetch past any offset is answered out of range with where the log starts and
		// ends, and reads nothing (one at 0 read the first segment, from the store if it
		// is not cached: a corrupt or unreachable one kept a subscriber to new records out).
		_, hold, err := fetch(&pb.FetchRequest{Topic: req.Topic, Partition: req.Partition, Offset: math.MaxInt64, MaxBytes: 1})
		hold.Release()
		start, hwm, ranged := pb.OffsetRange(err)
		if !ranged {
			if err == nil {
				err = status.Error(codes.Internal, "a fetch past every offset was answered with records")
			}
			return closing(err)
		}
		offset = hwm
		if req.Offset == pb.OffsetEarliest {
			offset = start
		}
	}
	for fctx.Err() == nil {
		resp, hold, err := fetch(&pb.FetchRequest{Topic: req.Topic, Partition: req.Partition, Offset: offset, MaxBytes: req.MaxBytes, MaxWaitMs: 1000})
		if err != nil {
			return closing(err)
		}
		if len(resp.Records) == 0 {
			hold.Release()
			continue
		}
		grpcmem.HoldUntilWritten(ctx, resp, hold)
		if err := stream.Send(resp); err != nil {
			return err
		}
		offset = resp.Records[len(resp.Records)-1].Offset + 1
	}
	return closing(nil)
}

// deletedSince is the error for a request to a topic that was deleted, and a topic of its
// name created, since the request's stream first looked it up.
func deletedSince(topic string) error {
	return status.Errorf(codes.NotFound, "topic %s was deleted (and created again) since this stream began", topic)
}
