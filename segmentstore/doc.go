// Package segmentstore owns the bytes StreamHouse keeps in object storage.
//
// A segment is an immutable object holding a contiguous run of one partition's records
// (format v1, specified in FORMAT.md): a CRC-protected header, records grouped into
// LZ4-compressed blocks, a footer index from each block's first offset to its byte
// position, and a fixed trailer that locates the footer. The layout lets a reader fetch the
// trailer and footer with one ranged GET and then only the blocks that hold the offsets it
// wants.
//
// Invariants:
//   - Every byte of a segment is covered by a CRC32C or by a structural check, so any
//     corruption or truncation is reported as ErrCorrupt; decoders never panic on input.
//   - Offsets inside a segment strictly increase; the header's base and last offsets, its
//     record count and its timestamp range agree with the blocks.
//   - Encoding is deterministic: the same records and options give the same bytes.
//   - Blocks are self-contained, so Concat merges segments of a partition by copying
//     their verified blocks behind a new header and footer, without decompressing
//     (ConcatParts: the same without the copy, as pieces to write in order).
//
// Cache is the agent's memory of what it read: a segment of up to 2 MiB (a busy
// partition's flush) is read with one GET and held as one entry, the records of its
// blocks stored raw aliasing the bytes read; a larger one is read a footer and a run of
// blocks at a time, each block cached on its own.
//
// The object stores that hold segments (s3:// and file://) live in the objstore
// subpackage.
package segmentstore
