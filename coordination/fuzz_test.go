package coordination

import "testing"

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
