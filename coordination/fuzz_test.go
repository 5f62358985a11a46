package coordination

import (
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// FuzzGroupOffsetKey: group names come from clients (Kafka group ids are free-form).
// Every name the validator accepts must make a key that parses back to the same group
// and partition, and no key, however odd, may crash the parser.
func FuzzGroupOffsetKey(f *testing.F) {
	for _, s := range []struct {
		group, topic string
		partition    int32
	}{{"billing", "orders", 3}, {"a/offsets/b", "t", 0}, {"%2F", "x.y_z-1", 99999}, {"ünï cödé ☃", "t", 1}} {
		f.Add(s.group, s.topic, s.partition)
	}
	c := &Client{}
	keys, err := NewKeys("/fuzz")
	if err != nil {
		f.Fatal(err)
	}
	c.keys = keys
	f.Fuzz(func(t *testing.T, group, topic string, partition int32) {
		// Arbitrary keys under the prefix: no panic, and a parsed group is a valid name.
		if g, _, ok := c.parseGroupOffsetKey(keys.Groups() + group + groupOffsetsInfix + topic); ok && g == "" {
			t.Fatalf("parsed an empty group out of %q", group)
		}
		if ValidateGroupName(group) != nil || ValidateTopicName(topic) != nil || partition < 0 {
			return
		}
		g, p, ok := c.parseGroupOffsetKey(keys.GroupOffset(group, topic, partition))
		if !ok || g != group || p != (Partition{topic, partition}) {
			t.Fatalf("key of (%q, %q, %d) parses to (%q, %+v, %v)", group, topic, partition, g, p, ok)
		}
	})
}

// FuzzDecodeSegment: an index value is read by every agent, the sweeper among them, which
// deletes objects the index does not name. Whatever etcd holds, decoding must not panic,
// and a value it accepts must name, in its pieces, a contiguous run of its offsets and
// bytes, each in an object.
func FuzzDecodeSegment(f *testing.F) {
	stored := SegmentMeta{Object: "data/a/1.obj", Offset: 40, Base: 10, Last: 19, Records: 10, Bytes: 1000, ZBytes: 400, Epoch: 3}
	link := SegmentMeta{Base: 10, Last: 29, Records: 20, Bytes: 2000, ZBytes: 800, Epoch: 3, Parts: []SegmentPart{
		{Object: "data/a/1.obj", Offset: 40, ZBytes: 400, Base: 10, Last: 19, Records: 10, Bytes: 1000},
		{Object: "data/a/2.obj", ZBytes: 400, Base: 20, Last: 29, Records: 10, Bytes: 1000}}}
	for _, m := range []SegmentMeta{stored, link} {
		f.Add([]byte(mustJSON(m)))
	}
	f.Add([]byte(`{"base":1,"last":0,"zbytes":-1,"parts":[{"object":"x","base":1,"last":0}]}`))
	f.Fuzz(func(t *testing.T, value []byte) {
		m, err := decodeSegment(&mvccpb.KeyValue{Key: []byte("/s/segments/t/0/1"), Value: value})
		if err != nil {
			return
		}
		next, zbytes := m.Base, int64(0)
		for _, p := range m.Pieces() {
			if p.Object == "" {
				t.Fatalf("accepted %q: a piece without an object", value)
			}
			if len(m.Parts) > 0 && (p.Base != next || p.Last < p.Base) {
				t.Fatalf("accepted %q: piece [%d, %d] after offset %d", value, p.Base, p.Last, next-1)
			}
			next, zbytes = p.Last+1, zbytes+p.ZBytes
		}
		if len(m.Parts) > 0 && (next != m.Last+1 || zbytes != m.ZBytes) {
			t.Fatalf("accepted %q: pieces hold [%d, %d] in %d bytes", value, m.Base, next-1, zbytes)
		}
		for _, o := range m.Objects() {
			if o == "" {
				t.Fatalf("accepted %q: an empty object name", value)
			}
		}
	})
}

// FuzzDecodeTopic: a topic's spec is read by every agent from etcd, where operators may
// edit it by hand. Whatever it holds, decoding must not panic, and a spec it accepts is
// one CreateTopic could have stored for that name: its name, a partition count an agent
// can divide by, settings within their bounds.
func FuzzDecodeTopic(f *testing.F) {
	good, err := TopicSpec{Name: "t", Partitions: 3}.withDefaults()
	if err != nil {
		f.Fatal(err)
	}
	f.Add("t", []byte(mustJSON(good)))
	f.Add("t", []byte(`{"name":"t","partitions":0}`))
	f.Add("u", []byte(`{"name":"t","partitions":1,"linger_ms":-4}`))
	f.Fuzz(func(t *testing.T, name string, value []byte) {
		spec, err := decodeTopic(name, value)
		if err != nil {
			return
		}
		if spec.Name != name || spec.Partitions < 1 || spec.Partitions > MaxPartitions {
			t.Fatalf("accepted %q as topic %q: %+v", value, name, spec)
		}
		if again, err := spec.withDefaults(); err != nil || again != spec {
			t.Fatalf("accepted %q as %+v, which CreateTopic would store as %+v (%v)", value, spec, again, err)
		}
	})
}
