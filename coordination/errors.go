package coordination

import (
	"errors"
	"fmt"
)

var (
	// ErrFenced: a write on behalf of a partition was refused because the writer no longer
	// holds the partition's lease at its epoch, or the high-water mark is not the one it
	// expected. Nothing was written. The writer must stop; a new owner has or will have
	// the partition.
	ErrFenced = errors.New("coordination: fenced")
	// ErrInvalidArgument: a bad name, count, size or offset. Nothing was written.
	ErrInvalidArgument = errors.New("coordination: invalid argument")
	// ErrTopicExists: create of a topic whose name is taken (also by a deleted topic whose
	// data is not yet removed).
	ErrTopicExists = errors.New("coordination: topic already exists")
	// ErrTopicNotFound: no such topic, or it is deleted.
	ErrTopicNotFound = errors.New("coordination: topic not found")
	// ErrPartitionNotFound: the topic has no such partition.
	ErrPartitionNotFound = errors.New("coordination: partition not found")
	// ErrOffsetOutOfRange: an offset past the partition's high-water mark.
	ErrOffsetOutOfRange = errors.New("coordination: offset out of range")
	// ErrSessionDone: the node session has ended (lease expired or revoked).
	ErrSessionDone = errors.New("coordination: session done")
)

// FenceError says why a fenced write was refused. It matches ErrFenced.
type FenceError struct {
	Topic     string
	Partition int32
	Epoch     int64 // the writer's epoch
	// Holder is the epoch of the current lease, 0 when nobody holds it.
	Holder int64
	// ExpectedHWM is what the writer believed; HWM what etcd has.
	ExpectedHWM, HWM int64
}

func (e *FenceError) Error() string {
	if e.Holder != e.Epoch {
		return fmt.Sprintf("coordination: fenced: %s/%d epoch %d is no longer the owner (current epoch %d)",
			e.Topic, e.Partition, e.Epoch, e.Holder)
	}
	return fmt.Sprintf("coordination: fenced: %s/%d epoch %d expected hwm %d, etcd has %d",
		e.Topic, e.Partition, e.Epoch, e.ExpectedHWM, e.HWM)
}

// Is makes errors.Is(err, ErrFenced) true.
func (e *FenceError) Is(target error) bool { return target == ErrFenced }

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidArgument, fmt.Sprintf(format, args...))
}
