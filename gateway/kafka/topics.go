package kafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/streamhouse/streamhouse/coordination"
)

// Topic configs as Kafka names them. The first five map onto the topic's settings and
// may be set at creation (and are what DescribeConfigs reports); the rest are fixed.
const (
	configRetentionMs    = "retention.ms"
	configRetentionBytes = "retention.bytes"
	configSegmentBytes   = "segment.bytes"
	configLingerMs       = "streamhouse.linger.ms"
	configMergeBytes     = "streamhouse.merge.bytes"
	configCleanupPolicy  = "cleanup.policy"
)

// errInvalidConfig marks a topic config a client may not set.
var errInvalidConfig = errors.New("invalid config")

// applyConfigs sets a CreateTopics request's configs on spec.
func applyConfigs(spec *coordination.TopicSpec, configs []kmsg.CreateTopicsRequestTopicConfig) error {
	for _, c := range configs {
		if c.Value == nil {
			continue // null: the default
		}
		v := *c.Value
		if c.Name == configCleanupPolicy {
			if v != "delete" {
				return fmt.Errorf("%w: %s=%s: only delete is supported (no log compaction)", errInvalidConfig, c.Name, v)
			}
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: %s=%q is not an integer", errInvalidConfig, c.Name, v)
		}
		if n == 0 {
			// A topic's 0 is its default: taken, retention.ms=0 (delete at once) or
			// retention.bytes=0 would have given a week's or no limit in silence.
			return fmt.Errorf("%w: %s=0 is not a setting of this cluster: leave it out for the default", errInvalidConfig, c.Name)
		}
		switch c.Name {
		case configRetentionMs:
			spec.RetentionMs = n
		case configRetentionBytes:
			spec.RetentionBytes = n
		case configSegmentBytes:
			spec.SegmentBytes = n
		case configLingerMs:
			spec.LingerMs = n
		case configMergeBytes:
			spec.MergeBytes = n
		default:
			return fmt.Errorf("%w: %s cannot be set (settable: %s, %s, %s, %s, %s, %s=delete)", errInvalidConfig, c.Name,
				configRetentionMs, configRetentionBytes, configSegmentBytes, configLingerMs, configMergeBytes, configCleanupPolicy)
		}
	}
	return nil
}

// topicConfigs are a topic's settings as Kafka configs, with whether each is a default.
func (s *Server) topicConfigs(t coordination.TopicSpec) []kmsg.DescribeConfigsResponseResourceConfig {
	def, _ := coordination.ValidateTopic(coordination.TopicSpec{Name: t.Name, Partitions: 1})
	i64 := strconv.FormatInt
	entries := []struct {
		name, value, def string
		readOnly         bool
	}{
		{configRetentionMs, i64(t.RetentionMs, 10), i64(def.RetentionMs, 10), false},
		{configRetentionBytes, i64(t.RetainBytes(), 10), i64(def.RetainBytes(), 10), false},
		{configSegmentBytes, i64(t.SegmentBytes, 10), i64(def.SegmentBytes, 10), false},
		{configLingerMs, i64(t.LingerMs, 10), i64(def.LingerMs, 10), false},
		{configMergeBytes, i64(t.MergeTarget(), 10), i64(def.MergeTarget(), 10), false},
		{configCleanupPolicy, "delete", "delete", true},
		{"compression.type", "producer", "producer", true},
		{"message.timestamp.type", "CreateTime", "CreateTime", true},
		{"max.message.bytes", strconv.Itoa(s.limits.MaxBatchBytes), strconv.Itoa(s.limits.MaxBatchBytes), true},
		{"min.insync.replicas", "1", "1", true},
	}
	out := make([]kmsg.DescribeConfigsResponseResourceConfig, 0, len(entries))
	for _, e := range entries {
		c := kmsg.NewDescribeConfigsResponseResourceConfig()
		c.Name, c.Value, c.ReadOnly = e.name, strp(e.value), e.readOnly
		c.IsDefault = e.value == e.def
		c.Source = kmsg.ConfigSourceDynamicTopicConfig
		if c.IsDefault {
			c.Source = kmsg.ConfigSourceDefaultConfig
		}
		c.ConfigType = kmsg.ConfigTypeLong
		if e.name == configCleanupPolicy || e.name == "compression.type" || e.name == "message.timestamp.type" {
			c.ConfigType = kmsg.ConfigTypeString
		}
		out = append(out, c)
	}
	return out
}

func (s *Server) createTopics(ctx context.Context, r *kmsg.CreateTopicsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.CreateTopicsResponse)
	for _, t := range r.Topics {
		rt := kmsg.NewCreateTopicsResponseTopic()
		rt.Topic = t.Topic
		spec := coordination.TopicSpec{Name: t.Topic, Partitions: t.NumPartitions}
		if spec.Partitions == -1 {
			spec.Partitions = 1 // the broker's default, num.partitions=1
		}
		code, msg := s.createTopic(ctx, r.ValidateOnly, &spec, t)
		rt.ErrorCode = code
		if msg != "" {
			rt.ErrorMessage = strp(msg)
		}
		if code == errNone {
			rt.NumPartitions, rt.ReplicationFactor = spec.Partitions, 1
			for _, c := range s.topicConfigs(spec) {
				cc := kmsg.NewCreateTopicsResponseTopicConfig()
				cc.Name, cc.Value, cc.ReadOnly, cc.Source = c.Name, c.Value, c.ReadOnly, int8(c.Source)
				rt.Configs = append(rt.Configs, cc)
			}
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// createTopic creates one topic of a CreateTopics request (or validates it only).
func (s *Server) createTopic(ctx context.Context, validateOnly bool, spec *coordination.TopicSpec, t kmsg.CreateTopicsRequestTopic) (int16, string) {
	if err := coordination.ValidateTopicName(t.Topic); err != nil {
		return kerr.InvalidTopicException.Code, err.Error()
	}
	if len(t.ReplicaAssignment) > 0 {
		return kerr.InvalidReplicaAssignment.Code, "partitions are placed by the cluster; replica assignments are not taken"
	}
	if t.NumPartitions != -1 && (t.NumPartitions < 1 || t.NumPartitions > coordination.MaxPartitions) {
		return kerr.InvalidPartitions.Code, fmt.Sprintf("%d partitions, want 1..%d", t.NumPartitions, coordination.MaxPartitions)
	}
	if err := applyConfigs(spec, t.Configs); err != nil {
		return kerr.InvalidConfig.Code, err.Error()
	}
	valid, err := coordination.ValidateTopic(*spec)
	if err != nil {
		return kerr.InvalidConfig.Code, err.Error()
	}
	if validateOnly {
		if err := s.coord.TopicNameFree(ctx, spec.Name); err != nil {
			return codeOf(err), err.Error()
		}
		*spec = valid
		return errNone, ""
	}
	created, err := s.coord.CreateTopic(ctx, *spec)
	if err != nil {
		return codeOf(err), err.Error()
	}
	*spec = created
	s.log.Info("topic created", zap.String("topic", created.Name), zap.Int32("partitions", created.Partitions))
	return errNone, ""
}

func (s *Server) deleteTopics(ctx context.Context, r *kmsg.DeleteTopicsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DeleteTopicsResponse)
	for _, name := range r.TopicNames {
		rt := kmsg.NewDeleteTopicsResponseTopic()
		rt.Topic = strp(name)
		if err := s.coord.DeleteTopic(ctx, name); err != nil {
			rt.ErrorCode, rt.ErrorMessage = codeOf(err), strp(err.Error())
		} else {
			s.log.Info("topic deleted", zap.String("topic", name))
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func (s *Server) describeConfigs(ctx context.Context, r *kmsg.DescribeConfigsRequest) kmsg.Response {
	resp := r.ResponseKind().(*kmsg.DescribeConfigsResponse)
	for _, res := range r.Resources {
		rr := kmsg.NewDescribeConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = res.ResourceType, res.ResourceName
		switch res.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			spec, err := s.coord.Topic(ctx, res.ResourceName)
			if err != nil {
				rr.ErrorCode, rr.ErrorMessage = codeOf(err), strp(err.Error())
				break
			}
			for _, c := range s.topicConfigs(spec) {
				if wanted(res.ConfigNames, c.Name) {
					rr.Configs = append(rr.Configs, c)
				}
			}
		case kmsg.ConfigResourceTypeBroker:
			// No broker settings are exposed; an empty list tells tools there is nothing to show.
		default:
			rr.ErrorCode = kerr.InvalidRequest.Code
			rr.ErrorMessage = strp(fmt.Sprintf("resource type %v: only topics (and brokers, empty) are described", res.ResourceType))
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp
}

// wanted reports whether name is in names; a null or empty list asks for every config.
func wanted(names []string, name string) bool {
	if len(names) == 0 {
		return true
	}
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}
