package actors

import "errors"

// ErrInvalidArgument: a request that can never succeed as it is (empty, malformed).
var ErrInvalidArgument = errors.New("actors: invalid argument")

// Idempotent produce refusals (see producers.go): each writes nothing.
var (
	// ErrDuplicateSequence: a retry of a batch committed before, whose offsets the
	// partition no longer remembers. The producer takes it as written.
	ErrDuplicateSequence = errors.New("actors: duplicate sequence number")
	// ErrOutOfOrderSequence: the batch's sequence does not follow the producer's last.
	ErrOutOfOrderSequence = errors.New("actors: out of order sequence number")
	// ErrProducerFenced: a newer epoch of the producer id has written to the partition.
	ErrProducerFenced = errors.New("actors: producer fenced by a newer epoch")
)
