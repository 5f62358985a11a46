package objstore

import (
	"errors"
	"io"
)

// partsReader reads the concatenation of parts without copying them into one buffer,
// and seeks in it (the S3 client rewinds a body to retry a request).
type partsReader struct {
	parts [][]byte
	size  int64
	off   int64 // position in the concatenation
	i     int   // the part holding off (len(parts) at the end)
	in    int64 // off within parts[i]
}

func newPartsReader(parts [][]byte) *partsReader {
	r := &partsReader{parts: parts}
	for _, p := range parts {
		r.size += int64(len(p))
	}
	r.locate()
	return r
}

// locate sets i and in from off.
func (r *partsReader) locate() {
	r.i, r.in = 0, r.off
	for r.i < len(r.parts) && r.in >= int64(len(r.parts[r.i])) {
		r.in -= int64(len(r.parts[r.i]))
		r.i++
	}
}

func (r *partsReader) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) && r.i < len(r.parts) {
		c := copy(b[n:], r.parts[r.i][r.in:])
		n += c
		r.off += int64(c)
		r.in += int64(c)
		if r.in == int64(len(r.parts[r.i])) {
			r.i, r.in = r.i+1, 0
			for r.i < len(r.parts) && len(r.parts[r.i]) == 0 {
				r.i++
			}
		}
	}
	if n == 0 && len(b) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (r *partsReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return r.off, errors.New("objstore: seek: invalid whence")
	}
	if offset < 0 {
		return r.off, errors.New("objstore: seek: negative position")
	}
	r.off = offset
	r.locate()
	return r.off, nil
}
