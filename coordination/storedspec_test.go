package coordination_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/streamhouse/streamhouse/coordination"
)

// A topic spec written into etcd by hand (etcdctl) is checked as CreateTopic checks a new
// one whenever it is read: one of 0 partitions, or naming another topic, is an error of
// the stored spec (not of the caller's request), is left out of listings and the mirror,
// and never reaches a server that would divide by its partition count.
func TestAStoredSpecIsCheckedWhenRead(t *testing.T) {
	c := newClient(t)
	ctx := ctxT(t)
	mustTopic(t, c, "good", 1)
	for name, value := range map[string]string{
		"zero":  `{"name":"zero","partitions":0}`,
		"other": `{"name":"good","partitions":3}`,
		"huge":  `{"name":"huge","partitions":1,"segment_bytes":1}`,
	} {
		if _, err := c.Etcd().Put(ctx, c.Keys().Topic(name), value); err != nil {
			t.Fatal(err)
		}
		_, err := c.Topic(ctx, name)
		if err == nil || errors.Is(err, coordination.ErrInvalidArgument) || !strings.Contains(err.Error(), "stored spec") {
			t.Errorf("topic %s stored as %s: %v, want an error of its stored spec", name, value, err)
		}
	}
	specs, err := c.Topics(ctx)
	if err != nil || len(specs) != 1 || specs[0].Name != "good" {
		t.Fatalf("topics listed: %+v, %v; want only good", specs, err)
	}
	m := watched(t, c)
	for _, name := range []string{"zero", "other", "huge"} {
		if spec, ok := m.Topic(name); ok {
			t.Errorf("the mirror serves topic %s as %+v", name, spec)
		}
	}
	if spec, ok := m.Topic("good"); !ok || spec.Partitions != 1 {
		t.Errorf("the mirror's good topic: %+v %v", spec, ok)
	}
}
