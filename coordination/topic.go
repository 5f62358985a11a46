package coordination

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"time"
)

// Topic limits and defaults. Every TopicSpec field with a zero value takes its default at
// creation.
const (
	MaxTopicNameLen = 249
	MaxPartitions   = 10000

	DefaultRetention    = 7 * 24 * time.Hour
	DefaultLinger       = 5 * time.Millisecond
	DefaultSegmentBytes = 8 << 20
	// DefaultMergeBytes is the size merged segments grow to (TopicSpec.MergeBytes).
	DefaultMergeBytes = 64 << 20

	MaxLinger       = 60 * time.Second
	MinSegmentBytes = 1 << 10
	MaxSegmentBytes = 1 << 30
	// MinRetention keeps a typo from deleting data as soon as it is written.
	MinRetention = time.Minute
)

var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// TopicSpec is the stored description of a topic.
type TopicSpec struct {
	Name       string `json:"name"`
	Partitions int32  `json:"partitions"`
	// RetentionMs is how long segments are kept, in milliseconds; -1 keeps them forever.
	RetentionMs int64 `json:"retention_ms"`
	// LingerMs is how long a partition waits for more records before sealing a segment.
	LingerMs int64 `json:"linger_ms"`
	// SegmentBytes seals a segment once its records reach this many bytes.
	SegmentBytes int64 `json:"segment_bytes"`
	// RetentionBytes bounds each partition's stored (compressed) bytes: its oldest
	// segments are removed while the rest still hold at least this many; -1 (or 0 in a
	// spec written before it existed) keeps them whatever their size.
	RetentionBytes int64 `json:"retention_bytes,omitempty"`
	// MergeBytes is the size that a partition's small adjacent segments are merged into
	// (0 in a spec written before it existed: DefaultMergeBytes).
	MergeBytes int64     `json:"merge_bytes,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	// DeletedAt is set when the topic is deleted; its data is removed later.
	DeletedAt *time.Time `json:"deleted_at,omitempty"`
	// Incarnation tells this topic from others of its name before or after it: the
	// create revision of its key, set when the spec is read from etcd (not stored). A
	// request carries the incarnation its sender looked up, so that one in flight across
	// a delete, the purge and a create of the name reaches none of the new topic's data.
	Incarnation int64 `json:"-"`
}

// Linger is LingerMs as a duration.
func (s *TopicSpec) Linger() time.Duration { return time.Duration(s.LingerMs) * time.Millisecond }

// Retention is RetentionMs as a duration; negative means forever. So does a retention
// longer than a time.Duration holds (292 years): Kafka tools set retention.ms to
// Long.MAX_VALUE for "forever", and the product would wrap to any duration at all (2^64
// ns and a minute is a minute).
func (s *TopicSpec) Retention() time.Duration {
	if s.RetentionMs < 0 || s.RetentionMs > math.MaxInt64/int64(time.Millisecond) {
		return -1
	}
	return time.Duration(s.RetentionMs) * time.Millisecond
}

// RetainBytes is RetentionBytes with its default: negative means no size limit.
func (s *TopicSpec) RetainBytes() int64 {
	if s.RetentionBytes <= 0 {
		return -1
	}
	return s.RetentionBytes
}

// MergeTarget is MergeBytes with its default.
func (s *TopicSpec) MergeTarget() int64 {
	if s.MergeBytes <= 0 {
		return DefaultMergeBytes
	}
	return s.MergeBytes
}

// Deleted reports whether the topic has been deleted.
func (s *TopicSpec) Deleted() bool { return s.DeletedAt != nil }

// ValidateTopicName accepts 1 to 249 characters of [a-zA-Z0-9._-], except "." and "..",
// as Kafka does.
func ValidateTopicName(name string) error {
	if !topicName.MatchString(name) || name == "." || name == ".." {
		return invalidf("topic name %q: want 1-%d characters of a-z A-Z 0-9 . _ - (not . or ..)", name, MaxTopicNameLen)
	}
	return nil
}

// withDefaults fills zero fields and validates the result.
func (s TopicSpec) withDefaults() (TopicSpec, error) {
	if err := ValidateTopicName(s.Name); err != nil {
		return s, err
	}
	if s.Partitions < 1 || s.Partitions > MaxPartitions {
		return s, invalidf("topic %s: %d partitions, want 1..%d", s.Name, s.Partitions, MaxPartitions)
	}
	if s.RetentionMs == 0 {
		s.RetentionMs = DefaultRetention.Milliseconds()
	}
	if s.LingerMs == 0 {
		s.LingerMs = DefaultLinger.Milliseconds()
	}
	if s.SegmentBytes == 0 {
		s.SegmentBytes = DefaultSegmentBytes
	}
	if s.RetentionBytes == 0 {
		s.RetentionBytes = -1
	}
	if s.MergeBytes == 0 {
		s.MergeBytes = DefaultMergeBytes
	}
	switch {
	case s.RetentionMs != -1 && s.RetentionMs < MinRetention.Milliseconds():
		return s, invalidf("topic %s: retention %dms, want -1 (forever) or at least %s", s.Name, s.RetentionMs, MinRetention)
	case s.LingerMs < 0 || s.LingerMs > MaxLinger.Milliseconds():
		return s, invalidf("topic %s: linger %dms, want 1..%d (0: the default, %s)", s.Name, s.LingerMs, MaxLinger.Milliseconds(), DefaultLinger)
	case s.SegmentBytes < MinSegmentBytes || s.SegmentBytes > MaxSegmentBytes:
		return s, invalidf("topic %s: segment bytes %d, want %d..%d", s.Name, s.SegmentBytes, MinSegmentBytes, MaxSegmentBytes)
	case s.RetentionBytes != -1 && s.RetentionBytes < MinSegmentBytes:
		return s, invalidf("topic %s: retention bytes %d, want -1 (no limit) or at least %d", s.Name, s.RetentionBytes, MinSegmentBytes)
	case s.MergeBytes < MinSegmentBytes || s.MergeBytes > MaxSegmentBytes:
		return s, invalidf("topic %s: merge bytes %d, want %d..%d", s.Name, s.MergeBytes, MinSegmentBytes, MaxSegmentBytes)
	}
	return s, nil
}

// decodeTopic reads the spec stored for topic name and checks it as CreateTopic checks a
// new one: etcd is operators' to read and edit (etcdctl), and a spec written by hand with
// 0 partitions, or another topic's name, must be an error, not a division by zero or a
// topic served under the wrong name.
func decodeTopic(name string, value []byte) (TopicSpec, error) {
	var spec TopicSpec
	if err := json.Unmarshal(value, &spec); err != nil {
		return spec, fmt.Errorf("topic %s: decode its spec: %w", name, err)
	}
	if spec.Name != name {
		return spec, fmt.Errorf("topic %s: its stored spec names topic %q (mend it or delete it with etcdctl)", name, spec.Name)
	}
	// Not ErrInvalidArgument: the caller's request is not what is wrong.
	checked, err := spec.withDefaults()
	if err != nil {
		return spec, fmt.Errorf("topic %s: its stored spec is not valid (mend it or delete it with etcdctl): %v", name, err)
	}
	return checked, nil
}

// Partition names one partition of a topic.
type Partition struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
}

func (p Partition) String() string { return p.Topic + "/" + itoa32(p.Partition) }

// ValidateTopic returns spec with its defaults filled in, or the error CreateTopic would
// return for it, without writing anything (a dry run).
func ValidateTopic(spec TopicSpec) (TopicSpec, error) { return spec.withDefaults() }
