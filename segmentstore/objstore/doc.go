// Package objstore is the small object-store interface StreamHouse keeps segments in, with
// two backends chosen by URL:
//
//	s3://bucket/prefix?endpoint=http://127.0.0.1:9000   S3 or MinIO, through aws-sdk-go-v2
//	file:///var/lib/streamhouse                          a local directory (streamhouse dev)
//
// Every backend offers the same semantics, checked by one conformance suite (Conformance):
// Put replaces an object atomically (readers see the old or the new bytes, never a mix),
// writing it from its parts without joining them first;
// Get and GetRange fail with ErrNotFound for a missing object; Delete of a missing object
// succeeds; List returns keys in lexical order. Keys are slash-separated relative paths;
// ValidateKey says which are accepted.
//
// The S3 backend retries transient failures (throttling, 5xx, dropped connections) with
// capped exponential backoff and jitter, and never retries what retrying cannot fix: a
// missing object or bucket (ErrNotFound, ErrNoBucket) or rejected credentials (ErrAuth).
//
// Metrics: Instrument wraps a Store to count every operation by op and result
// (streamhouse_store_requests_total{op,result}, result ok, not_found or error) and time it
// (streamhouse_store_request_duration_seconds{op}). Agents instrument the store they open.
package objstore
