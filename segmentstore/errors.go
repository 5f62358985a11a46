package segmentstore

import (
	"errors"
	"fmt"
)

var (
	// ErrCorrupt matches every error caused by bytes that are not a valid segment:
	// checksum mismatches, truncation, impossible lengths, inconsistent index entries.
	ErrCorrupt = errors.New("segmentstore: corrupt segment")
	// ErrUnsupportedVersion is returned for an intact segment written in a format version
	// this build cannot read.
	ErrUnsupportedVersion = errors.New("segmentstore: unsupported segment version")
	// ErrInvalidInput is returned by the encoder for records or parameters that cannot be
	// written: out-of-order offsets, an empty segment, a bad topic or partition.
	ErrInvalidInput = errors.New("segmentstore: invalid input")
)

// CorruptError says which section of a segment failed validation and why. It matches
// ErrCorrupt with errors.Is.
type CorruptError struct {
	Section string // "trailer", "footer", "header" or "block"
	Pos     int64  // byte position of the section in the segment, -1 when unknown
	Reason  string
}

func (e *CorruptError) Error() string {
	if e.Pos >= 0 {
		return fmt.Sprintf("segmentstore: corrupt segment: %s at byte %d: %s", e.Section, e.Pos, e.Reason)
	}
	return fmt.Sprintf("segmentstore: corrupt segment: %s: %s", e.Section, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true for every CorruptError.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

func corrupt(section string, pos int64, format string, args ...any) error {
	return &CorruptError{Section: section, Pos: pos, Reason: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidInput, fmt.Sprintf(format, args...))
}
