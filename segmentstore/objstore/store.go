package objstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Store holds immutable objects by key. Implementations are safe for concurrent use.
type Store interface {
	// Put writes the concatenation of parts (usually one) under key, replacing any
	// object there, atomically. Several parts spare the caller a copy of them into one
	// buffer (objects of many segments, merged segments).
	Put(ctx context.Context, key string, parts ...[]byte) error
	// Get returns the whole object.
	Get(ctx context.Context, key string) ([]byte, error)
	// GetRange returns n bytes from byte off, fewer when the object ends first.
	// off must be inside the object (ErrInvalidRange otherwise) and n positive.
	GetRange(ctx context.Context, key string, off, n int64) ([]byte, error)
	// Head returns the object's size and modification time.
	Head(ctx context.Context, key string) (ObjectInfo, error)
	// List returns every object whose key starts with prefix, in lexical key order.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes the object; deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// Check verifies that the store is reachable and usable: the bucket or directory
	// exists and the credentials are accepted.
	Check(ctx context.Context) error
	// Clock returns the time by the store's clock, the one that sets its objects'
	// ModTime, to within a second (S3 dates answers and, on AWS, listed objects to the
	// second): whoever judges an object's age judges it by this clock, not by its own,
	// which may be minutes off.
	Clock(ctx context.Context) (time.Time, error)
	// String names the store for logs, without credentials.
	String() string
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

var (
	// ErrNotFound: no object under that key.
	ErrNotFound = errors.New("objstore: object not found")
	// ErrNoBucket: the bucket (or, for file://, the directory) does not exist.
	ErrNoBucket = errors.New("objstore: bucket not found")
	// ErrAuth: the store rejected the credentials or denied the operation.
	ErrAuth = errors.New("objstore: access denied")
	// ErrInvalidKey: a key that ValidateKey rejects.
	ErrInvalidKey = errors.New("objstore: invalid key")
	// ErrInvalidRange: a range that does not start inside the object.
	ErrInvalidRange = errors.New("objstore: invalid range")
	// ErrInvalidURL: a store URL that Open cannot use.
	ErrInvalidURL = errors.New("objstore: invalid store URL")
)

// MaxKeyLen is the longest key accepted, S3's own limit.
const MaxKeyLen = 1024

// tempPrefix starts the names of files being written by the file backend; keys whose last
// element starts with it are reserved.
const tempPrefix = ".tmp-"

// ValidateKey accepts slash-separated relative paths of valid UTF-8 whose elements are not
// empty, ".", "..", or reserved temporary names, and that contain no NUL or backslash.
// The same rules hold for every backend, so that a key that works in dev works on S3.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidKey, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: %q is not UTF-8", ErrInvalidKey, key)
	case strings.ContainsAny(key, "\x00\\"):
		return fmt.Errorf("%w: %q contains NUL or backslash", ErrInvalidKey, key)
	}
	for _, elem := range strings.Split(key, "/") {
		if elem == "" || elem == "." || elem == ".." || strings.HasPrefix(elem, tempPrefix) {
			return fmt.Errorf("%w: %q has an empty, relative or reserved path element", ErrInvalidKey, key)
		}
	}
	return nil
}

// validatePrefix accepts "" and any prefix of a valid key.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	// A prefix may end in "/" or mid-element; what precedes its last "/" must be valid.
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 {
		if i == 0 {
			return fmt.Errorf("%w: prefix %q starts with /", ErrInvalidKey, prefix)
		}
		if err := ValidateKey(prefix[:i]); err != nil {
			return err
		}
	}
	if len(prefix) > MaxKeyLen || !utf8.ValidString(prefix) || strings.ContainsAny(prefix, "\x00\\") {
		return fmt.Errorf("%w: prefix %q", ErrInvalidKey, prefix)
	}
	return nil
}

func checkRange(off, n int64) error {
	if off < 0 || n <= 0 {
		return fmt.Errorf("%w: [%d, +%d)", ErrInvalidRange, off, n)
	}
	return nil
}

// Open returns the store a URL names:
//
//	s3://bucket[/prefix][?endpoint=URL&region=R&path_style=true|false&create_bucket=true&max_attempts=N&imds=true&signed_payload=true]
//	file:///absolute/dir   or   file://./relative/dir
//
// For s3://, unset parameters come from the environment as the AWS tools read it:
// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (or the shared config files). See S3Options for defaults.
func Open(ctx context.Context, rawURL string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidURL, err)
	}
	switch u.Scheme {
	case "s3":
		opts, err := s3OptionsFromURL(u)
		if err != nil {
			return nil, err
		}
		return OpenS3(ctx, opts)
	case "file":
		dir := u.Path
		if u.Host != "" && u.Host != "localhost" {
			dir = u.Host + u.Path // file://./data is the relative directory ./data
		}
		if dir == "" {
			return nil, fmt.Errorf("%w: %q names no directory", ErrInvalidURL, rawURL)
		}
		return OpenFile(dir)
	default:
		return nil, fmt.Errorf("%w: %q: scheme must be s3 or file", ErrInvalidURL, rawURL)
	}
}

// Exists reports whether an object is stored under key.
func Exists(ctx context.Context, s Store, key string) (bool, error) {
	_, err := s.Head(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	default:
		return false, err
	}
}

// Object is a stored object, or the part of it from Offset on, seen as a random-access
// range reader, the shape segment readers use (segmentstore.RangeReader): one object may
// hold several segments.
type Object struct {
	Store  Store
	Key    string
	Offset int64 // where the reader's byte 0 is in the object
}

// ReadRange reads exactly n bytes at off, failing if the object is shorter.
func (o Object) ReadRange(ctx context.Context, off, n int64) ([]byte, error) {
	b, err := o.Store.GetRange(ctx, o.Key, o.Offset+off, n)
	if err != nil {
		return nil, err
	}
	if int64(len(b)) != n {
		return nil, fmt.Errorf("%w: %s has %d bytes at %d, want %d", ErrInvalidRange, o.Key, len(b), off, n)
	}
	return b, nil
}
