package segmentstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

func crc32Update(crc uint32, b []byte) uint32 { return crc32.Update(crc, castagnoli, b) }

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

var errShort = errors.New("field runs past the end of the block")

// decoder reads varint-framed fields from a block payload. The first error sticks and every
// later read returns zero values, so callers check err once per record.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.off += n
	return v
}

// bytes returns the next n bytes, aliasing the payload; capacity is clipped so that an
// append by a caller can never overwrite the following field.
func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.err = errShort
		return nil
	}
	end := d.off + int(n)
	b := d.b[d.off:end:end]
	d.off = end
	return b
}

// nullable reads a byte string written by appendNullable.
func (d *decoder) nullable() []byte {
	n := d.varint()
	if d.err != nil {
		return nil
	}
	if n == -1 {
		return nil
	}
	if n < 0 {
		d.err = fmt.Errorf("negative length %d", n)
		return nil
	}
	return d.bytes(uint64(n))
}
