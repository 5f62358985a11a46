package kafka

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// maxProduceEntries bounds the topics and partitions one produce request names. Each
// takes 3 to 8 bytes of a frame at the least, and its request and response some 300
// bytes of memory whatever its size (an empty partition of 6 bytes: 213 allocated to
// decode it, its slice's growth included, and 88 for its response's entry): without a bound, a frame of 100 MiB of empty ones
// would make the agent allocate gigabytes. A client puts every partition of an agent
// that it has records for in one request, so an agent leading more than 65536
// partitions could be sent more; such a request closes its connection
// (docs/kafka.md).
const maxProduceEntries = 1 << 16

var errTooManyEntries = fmt.Errorf("more than %d topics and partitions in a produce request", maxProduceEntries)

// readProduce reads the body of a produce request (versions 3 to 12; the listener serves 3
// to 11) from its frame as it
// comes, each partition's records into an allocation of their own, and decodes it as
// kmsg does from a whole frame (but for the tagged fields, which no field of a produce
// request uses and which it skips). A whole frame holds every partition's batches: read
// into one buffer, a request of kgo's to 100 partitions (~80 MB) was that buffer and
// then a copy of each partition's records (which a partition keeps for tail reads, and
// which must not keep the whole frame alive), twice its size at once (docs/BENCHMARKS.md,
// profiling item 32).
func readProduce(f *frameReader, version int16) (*kmsg.ProduceRequest, error) {
	if version < 3 || version > 12 {
		// v13 names topics by id, which this reader does not.
		return nil, fmt.Errorf("%w: Produce v%d cannot be read", errFrame, version)
	}
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
	entries := 0
	for n := f.count(flexible, 2); n > 0 && f.err == nil; n-- {
		t := kmsg.NewProduceRequestTopic()
		t.Topic = f.string(flexible)
		n := f.count(flexible, 5)
		if entries += 1 + n; entries > maxProduceEntries && f.err == nil {
			f.err = fmt.Errorf("%w: %w", errFrame, errTooManyEntries)
		}
		for ; n > 0 && f.err == nil; n-- {
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
