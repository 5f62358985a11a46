package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamhouse/streamhouse/coordination"
)

// ClusterID is what Metadata names the cluster.
const ClusterID = "streamhouse"

// metadata answers with the brokers of the client's zone (all agents when it names none)
// and, for each topic asked for (every topic when the list is null, or empty before v1),
// its partitions led by those brokers. Topics are never created by a Metadata request.
func (s *Server) metadata(ctx context.Context, req *request, r *kmsg.MetadataRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.MetadataResponse)
	brokers := inZone(s.brokers(), zoneOf(req.clientID))
	for _, b := range brokers {
		mb := kmsg.NewMetadataResponseBroker()
		mb.NodeID, mb.Host, mb.Port = b.id, b.host, b.port
		if b.zone != "" {
			mb.Rack = strp(b.zone)
		}
		resp.Brokers = append(resp.Brokers, mb)
	}
	resp.ClusterID = strp(ClusterID)
	resp.ControllerID = -1
	if len(brokers) > 0 { // this agent is one unless its own address does not parse
		resp.ControllerID = brokers[0].id
	}

	var names []string
	all := r.Topics == nil || r.Version == 0 && len(r.Topics) == 0
	if all {
		for _, t := range s.mirror.Topics() {
			names = append(names, t.Name)
		}
	}
	// Each name is answered once, as Kafka's broker does: a request naming a topic of many
	// partitions a hundred thousand times would otherwise be answered with them all, each
	// time.
	seen := make(map[string]bool, len(r.Topics))
	for _, t := range r.Topics {
		if t.Topic != nil && !seen[*t.Topic] {
			seen[*t.Topic] = true
			names = append(names, *t.Topic)
		}
	}
	lookups := maxTopicLookups
	for _, name := range names {
		resp.Topics = append(resp.Topics, s.topicMetadata(ctx, name, brokers, &lookups))
	}
	return resp
}

// maxTopicLookups bounds the topics one Metadata request may have read from etcd: names
// the mirror does not know are mostly topics that do not exist, and a request of many
// such names would cost etcd a read each.
const maxTopicLookups = 16

// topicMetadata answers for topic name, reading it from etcd if the mirror does not know
// it and lookups (decremented) allows.
func (s *Server) topicMetadata(ctx context.Context, name string, brokers []broker, lookups *int) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	mt.Topic = strp(name)
	if err := coordination.ValidateTopicName(name); err != nil {
		mt.ErrorCode = errInvalidTopic
		return mt
	}
	spec, ok := s.mirror.Topic(name)
	if !ok {
		if *lookups <= 0 {
			mt.ErrorCode = kerr.UnknownTopicOrPartition.Code // retriable: a client asks again
			return mt
		}
		*lookups--
		// Created a moment ago on another agent, perhaps: etcd knows.
		var err error
		if spec, err = s.coord.Topic(ctx, name); err != nil {
			mt.ErrorCode = codeOf(err)
			return mt
		}
	}
	for i := range spec.Partitions {
		leader := s.leaderFor(coordination.Partition{Topic: name, Partition: i}, brokers)
		mp := kmsg.NewMetadataResponseTopicPartition()
		// No leader epoch: ours (an etcd revision) does not fit Kafka's, and -1 tells a
		// client not to fence its fetches on one.
		mp.Partition, mp.Leader, mp.LeaderEpoch = i, leader.id, -1
		mp.Replicas, mp.ISR = []int32{leader.id}, []int32{leader.id}
		mt.Partitions = append(mt.Partitions, mp)
	}
	return mt
}
