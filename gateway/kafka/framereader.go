package kafka

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// frameReader reads the fields of one request frame from its connection as they come,
// never past the frame's end, so that a large field (a partition's records) is read into
// an allocation of its own rather than into a buffer of the whole frame. Its first error
// sticks: every read after it returns a zero value, and err says what went wrong (a
// connection's error as it came, or errFrame for a frame that cannot be parsed).
type frameReader struct {
	r    *bufio.Reader
	left int // bytes of the frame not yet read
	err  error
}

// fail records a malformed frame, unless an error came first.
func (f *frameReader) fail(format string, args ...any) {
	if f.err == nil {
		f.err = fmt.Errorf("%w: %s", errFrame, fmt.Sprintf(format, args...))
	}
}

// room reports whether n more bytes of the frame can be read: no error came first, and
// the frame holds them.
func (f *frameReader) room(n int) bool {
	if f.err != nil {
		return false
	}
	if n < 0 || n > f.left {
		f.fail("a field of %d bytes past the frame's end (%d left)", n, f.left)
		return false
	}
	return true
}

// fixed reads a field of n bytes (at most the connection's buffer), which dst is: the
// caller's array, not a slice that escapes.
func (f *frameReader) fixed(dst []byte) {
	if !f.room(len(dst)) {
		return
	}
	b, err := f.r.Peek(len(dst))
	if err != nil {
		f.err = midFrame(err)
		return
	}
	copy(dst, b)
	f.skip(len(dst))
}

func (f *frameReader) int16() int16 {
	var b [2]byte
	f.fixed(b[:])
	return int16(binary.BigEndian.Uint16(b[:]))
}

func (f *frameReader) int32() int32 {
	var b [4]byte
	f.fixed(b[:])
	return int32(binary.BigEndian.Uint32(b[:]))
}

// uvarint reads an unsigned varint of 32 bits, as every one of the protocol's is: five
// bytes at most, the fifth no more than 0x0f (as kmsg reads them).
func (f *frameReader) uvarint() uint32 {
	var x uint32
	for i := 0; f.err == nil; i++ {
		var b [1]byte
		f.fixed(b[:])
		switch {
		case f.err != nil:
			return 0
		case i == 4 && b[0] > 0x0f:
			f.fail("a varint wider than 32 bits")
			return 0
		}
		x |= uint32(b[0]&0x7f) << (7 * i)
		if b[0]&0x80 == 0 {
			return x
		}
	}
	return 0
}

// size reads an unsigned varint that is a length or count, in compact form (plus one)
// or not: it is no larger than the frame's remaining bytes plus one.
func (f *frameReader) size() int {
	v := f.uvarint()
	if uint64(v) > uint64(f.left)+1 {
		f.fail("a length of %d past the frame's end (%d left)", v, f.left)
		return 0
	}
	return int(v)
}

// length reads the length of a string (wide false) or of bytes or an array (wide true):
// a signed int16 or int32, or in a flexible version an unsigned varint of the length
// plus one. -1 is null.
func (f *frameReader) length(flexible, wide bool) int {
	switch {
	case flexible:
		return f.size() - 1
	case wide:
		return int(f.int32())
	default:
		return int(f.int16())
	}
}

// count reads an array's length, checking that the frame has room for that many
// elements of at least minBytes each before anything is allocated for them. A null array
// is empty.
func (f *frameReader) count(flexible bool, minBytes int) int {
	n := 0
	if flexible {
		// As kmsg reads a compact count: in 32 bits, so that one of 2^31 or more is
		// negative, an empty array, and not a frame that cannot be read.
		n = int(int32(f.uvarint()) - 1)
	} else {
		n = int(f.int32())
	}
	if n > f.left/minBytes {
		f.fail("%d elements of at least %d bytes in %d", n, minBytes, f.left)
		return 0
	}
	return max(n, 0)
}

// bytes reads n bytes into an allocation of their own.
func (f *frameReader) bytes(n int) []byte {
	if !f.room(n) {
		return nil
	}
	b := make([]byte, n)
	read, err := io.ReadFull(f.r, b)
	f.left -= read
	if err != nil {
		f.err = midFrame(err)
		return nil
	}
	return b
}

// string reads a string, which may not be null.
func (f *frameReader) string(flexible bool) string {
	n := f.length(flexible, false)
	if n < 0 {
		f.fail("a null string where one is required")
		return ""
	}
	return string(f.bytes(n))
}

// nullableString reads a string that may be null (nil).
func (f *frameReader) nullableString(flexible bool) *string {
	n := f.length(flexible, false)
	if n < 0 {
		return nil
	}
	s := string(f.bytes(n))
	return &s
}

// nullableBytes reads bytes that may be null (nil).
func (f *frameReader) nullableBytes(flexible bool) []byte {
	n := f.length(flexible, true)
	if n < 0 {
		return nil
	}
	return f.bytes(n)
}

// skip discards n bytes of the frame.
func (f *frameReader) skip(n int) {
	if !f.room(n) {
		return
	}
	d, err := f.r.Discard(n)
	f.left -= d
	if err != nil {
		f.err = midFrame(err)
	}
}

// skipTags skips a tagged-fields section: a count and that many (tag, size, bytes). No
// field this listener reads is tagged.
func (f *frameReader) skipTags() {
	for n := f.size(); n > 0 && f.err == nil; n-- {
		f.uvarint()
		f.skip(f.size())
	}
}

// midFrame is a connection's error within a frame: its end is unexpected there.
func midFrame(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
