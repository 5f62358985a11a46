package kafka

import (
	"context"
	"reflect"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Error codes used by name (Kafka's protocol error codes).
var (
	errNone                    = int16(0)
	errUnsupportedVersion      = kerr.UnsupportedVersion.Code
	errUnknownTopicOrPartition = kerr.UnknownTopicOrPartition.Code
	errInvalidTopic            = kerr.InvalidTopicException.Code
)

const (
	keyApiVersions = int16(kmsg.ApiVersions)
	keyProduce     = int16(kmsg.Produce)
)

// versions are the APIs this listener serves and the versions of each, chosen so that
// every field they carry means something here: no topic ids (Fetch ≤ 12, Produce ≤ 11,
// DeleteTopics ≤ 5), no KIP-848 member epochs (OffsetCommit ≤ 8, OffsetFetch ≤ 7), no
// batched coordinator lookups (FindCoordinator ≤ 3). Produce starts at v3, the first with
// RecordBatch v2; Fetch at v4, the first that returns it with a last stable offset.
var versions = map[int16][2]int16{
	int16(kmsg.Produce):         {3, 11},
	int16(kmsg.Fetch):           {4, 12},
	int16(kmsg.ListOffsets):     {1, 6},
	int16(kmsg.Metadata):        {0, 12},
	int16(kmsg.OffsetCommit):    {0, 8},
	int16(kmsg.OffsetFetch):     {0, 7},
	int16(kmsg.FindCoordinator): {0, 3},
	int16(kmsg.JoinGroup):       {0, 7},
	int16(kmsg.Heartbeat):       {0, 4},
	int16(kmsg.LeaveGroup):      {0, 4},
	int16(kmsg.SyncGroup):       {0, 5},
	int16(kmsg.DescribeGroups):  {0, 5},
	int16(kmsg.ListGroups):      {0, 4},
	int16(kmsg.ApiVersions):     {0, 3},
	int16(kmsg.CreateTopics):    {0, 7},
	int16(kmsg.DeleteTopics):    {0, 5},
	int16(kmsg.InitProducerID):  {0, 4},
	int16(kmsg.DescribeConfigs): {0, 4},
}

func supported(key, version int16) bool {
	v, ok := versions[key]
	return ok && version >= v[0] && version <= v[1]
}

// apiName is a bounded metric label: the API's name, or "unknown".
func apiName(key int16) string {
	if n := kmsg.NameForKey(key); n != "" {
		return n
	}
	return "unknown"
}

// dispatch serves a parsed request of a supported version.
func (s *Server) dispatch(ctx context.Context, req *request) kmsg.Response {
	switch r := req.kreq.(type) {
	case *kmsg.ApiVersionsRequest:
		return s.apiVersions(errNone)
	case *kmsg.MetadataRequest:
		return s.metadata(ctx, req, r)
	case *kmsg.CreateTopicsRequest:
		return s.createTopics(ctx, r)
	case *kmsg.DeleteTopicsRequest:
		return s.deleteTopics(ctx, r)
	case *kmsg.DescribeConfigsRequest:
		return s.describeConfigs(ctx, r)
	case *kmsg.FetchRequest:
		return s.fetch(ctx, req, r)
	case *kmsg.ListOffsetsRequest:
		return s.listOffsets(ctx, r)
	case *kmsg.InitProducerIDRequest:
		return s.initProducerID(ctx, r)
	case *kmsg.FindCoordinatorRequest:
		return s.findCoordinator(req, r)
	case *kmsg.JoinGroupRequest:
		return s.groups.join(ctx, req, r)
	case *kmsg.SyncGroupRequest:
		return s.groups.sync(ctx, req, r)
	case *kmsg.HeartbeatRequest:
		return s.groups.heartbeat(r)
	case *kmsg.LeaveGroupRequest:
		return s.groups.leave(r)
	case *kmsg.DescribeGroupsRequest:
		return s.groups.describe(ctx, r)
	case *kmsg.ListGroupsRequest:
		return s.listGroups(ctx, r)
	case *kmsg.OffsetCommitRequest:
		return s.offsetCommit(ctx, r)
	case *kmsg.OffsetFetchRequest:
		return s.offsetFetch(ctx, r)
	}
	return nil
}

// apiVersions lists what versions serves; v0 of it (answering an unsupported version)
// reads only the error code and the list.
func (s *Server) apiVersions(code int16) *kmsg.ApiVersionsResponse {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.ErrorCode = code
	keys := make([]int16, 0, len(versions))
	for k := range versions {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, k := range keys {
		v := kmsg.NewApiVersionsResponseApiKey()
		v.ApiKey, v.MinVersion, v.MaxVersion = k, versions[k][0], versions[k][1]
		resp.ApiKeys = append(resp.ApiKeys, v)
	}
	return resp
}

// resultOf labels a response for the metrics: "ok", or the name of its top-level
// error code when it has one that is set.
func resultOf(resp kmsg.Response) string {
	if resp == nil {
		return "no_response"
	}
	v := reflect.ValueOf(resp).Elem().FieldByName("ErrorCode")
	if v.IsValid() && v.Kind() == reflect.Int16 && v.Int() != 0 {
		if e := kerr.ErrorForCode(int16(v.Int())); e != nil {
			if ke, ok := e.(*kerr.Error); ok {
				return ke.Message
			}
		}
		return "error"
	}
	return "ok"
}
