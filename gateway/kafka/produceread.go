package kafka

import "github.com/twmb/franz-go/pkg/kmsg"

// readProduce reads the body of a produce request (versions 3 to 11) from its frame as it
// comes, each partition's records into an allocation of their own, and decodes it as
// kmsg does from a whole frame (but for the tagged fields, which no field of a produce
// request uses and which it skips). A whole frame holds every partition's batches: read
// into one buffer, a request of kgo's to 100 partitions (~80 MB) was that buffer and
// then a copy of each partition's records (which a partition keeps for tail reads, and
// which must not keep the whole frame alive), twice its size at once (docs/BENCHMARKS.md,
// profiling item 32).
func readProduce(f *frameReader, version int16) (*kmsg.ProduceRequest, error) {
	flexible := version >= 9
	r := kmsg.NewPtrProduceRequest()
	r.SetVersion(version)
	if flexible {
		f.skipTags() // the request header's
	}
	r.TransactionID = f.nullableString(flexible)
	r.Acks = f.int16()
	r.TimeoutMillis = f.int32()
	// A topic is at least a name's length and a count; a partition its index and a
	// length.
	for n := f.count(flexible, 2); n > 0 && f.err == nil; n-- {
		t := kmsg.NewProduceRequestTopic()
		t.Topic = f.string(flexible)
		for n := f.count(flexible, 5); n > 0 && f.err == nil; n-- {
			p := kmsg.NewProduceRequestTopicPartition()
			p.Partition = f.int32()
			p.Records = f.nullableBytes(flexible)
			if flexible {
				f.skipTags()
			}
			t.Partitions = append(t.Partitions, p)
		}
		if flexible {
			f.skipTags()
		}
		r.Topics = append(r.Topics, t)
	}
	if flexible {
		f.skipTags()
	}
	// What follows the request's fields, if anything, is not read (as kmsg does not).
	f.skip(f.left)
	if f.err != nil {
		return nil, f.err
	}
	return r, nil
}
