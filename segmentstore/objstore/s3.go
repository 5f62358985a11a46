package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Options configure an S3 (or MinIO) store. Zero fields take the documented defaults.
type S3Options struct {
	Bucket string // required
	Prefix string // prepended to every key, without leading or trailing slash; default none
	// Endpoint is the S3 API base URL, e.g. http://127.0.0.1:9000 for MinIO.
	// Default: AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else AWS's own endpoints.
	Endpoint string
	// Region. Default: AWS_REGION or the shared config, else "us-east-1" (MinIO accepts any).
	Region string
	// AccessKey and SecretKey are static credentials. Default: the SDK's chain, which reads
	// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY first.
	AccessKey, SecretKey string
	// PathStyle addresses buckets as endpoint/bucket rather than bucket.endpoint.
	// Default: true when an endpoint is set (MinIO needs it), false otherwise.
	PathStyle *bool
	// MaxAttempts bounds tries per operation, the first included. Default 5.
	MaxAttempts int
	// MaxBackoff caps the exponential backoff between tries. Default 2s.
	MaxBackoff time.Duration
	// IMDS allows credentials from the EC2 instance metadata service. Default false: probing
	// it off EC2 costs seconds per start and sends traffic to a link-local address.
	IMDS bool
	// CreateBucket creates the bucket at open if it does not exist. Default false.
	CreateBucket bool
	// SignedPayload signs each request body's SHA-256 (SigV4). Default false: bodies are
	// sent UNSIGNED-PAYLOAD, which spares hashing every segment twice, here and in the
	// store; headers are signed either way, TLS protects bodies on https endpoints, and
	// segments carry CRC32C that every read checks.
	SignedPayload bool
}

const (
	defaultS3Attempts   = 5
	defaultS3MaxBackoff = 2 * time.Second
	defaultS3Region     = "us-east-1"
)

// s3OptionsFromURL reads s3://bucket/prefix?endpoint=&region=&path_style=&create_bucket=&max_attempts=&imds=&signed_payload=.
func s3OptionsFromURL(u *url.URL) (S3Options, error) {
	o := S3Options{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/")}
	if o.Bucket == "" {
		return o, fmt.Errorf("%w: %q names no bucket", ErrInvalidURL, u.Redacted())
	}
	if u.User != nil {
		return o, fmt.Errorf("%w: credentials do not belong in the URL; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", ErrInvalidURL)
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "endpoint", "region", "path_style", "create_bucket", "max_attempts", "imds", "signed_payload":
		default:
			return o, fmt.Errorf("%w: unknown parameter %q (known: endpoint, region, path_style, create_bucket, max_attempts, imds, signed_payload)", ErrInvalidURL, k)
		}
	}
	o.Endpoint, o.Region = q.Get("endpoint"), q.Get("region")
	boolParam := func(name string) (bool, error) {
		v := q.Get(name)
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("%w: %s=%q is not a boolean", ErrInvalidURL, name, v)
		}
		return b, nil
	}
	var err error
	if q.Has("path_style") {
		ps, err := boolParam("path_style")
		if err != nil {
			return o, err
		}
		o.PathStyle = &ps
	}
	if o.CreateBucket, err = boolParam("create_bucket"); err != nil {
		return o, err
	}
	if o.IMDS, err = boolParam("imds"); err != nil {
		return o, err
	}
	if o.SignedPayload, err = boolParam("signed_payload"); err != nil {
		return o, err
	}
	if v := q.Get("max_attempts"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return o, fmt.Errorf("%w: max_attempts=%q, want 1..100", ErrInvalidURL, v)
		}
		o.MaxAttempts = n
	}
	return o, nil
}

// S3Store keeps objects in an S3 bucket under an optional key prefix.
type S3Store struct {
	client *s3.Client
	bucket string
	prefix string // "" or ends with "/"
	name   string
}

// OpenS3 builds a client from opts and the environment. It does not contact the store
// unless CreateBucket is set; use Check for that.
func OpenS3(ctx context.Context, opts S3Options) (*S3Store, error) {
	if opts.Bucket == "" {
		return nil, fmt.Errorf("%w: no bucket", ErrInvalidURL)
	}
	if opts.Prefix != "" {
		if err := ValidateKey(opts.Prefix); err != nil {
			return nil, fmt.Errorf("%w: prefix: %w", ErrInvalidURL, err)
		}
	}
	if opts.Endpoint == "" {
		opts.Endpoint = firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	}
	if opts.Endpoint != "" {
		if u, err := url.Parse(opts.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("%w: endpoint %q is not an http(s) URL", ErrInvalidURL, opts.Endpoint)
		}
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = defaultS3Attempts
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = defaultS3MaxBackoff
	}
	pathStyle := opts.Endpoint != ""
	if opts.PathStyle != nil {
		pathStyle = *opts.PathStyle
	}

	loadOpts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = opts.MaxAttempts
				o.MaxBackoff = opts.MaxBackoff
				// The default token bucket stops retrying after a burst of failures, which
				// turns a short MinIO restart into failed uploads; backoff alone bounds load.
				o.RateLimiter = ratelimit.None
			})
		}),
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConnsPerHost = 64
			tr.ResponseHeaderTimeout = 30 * time.Second
		})),
	}
	if !opts.IMDS {
		loadOpts = append(loadOpts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	if opts.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(opts.Region))
	}
	if opts.AccessKey != "" || opts.SecretKey != "" {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(opts.AccessKey, opts.SecretKey, "")))
	}
	cfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3 store %s: load AWS config: %w", opts.Bucket, err)
	}
	if cfg.Region == "" {
		cfg.Region = defaultS3Region
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
		}
		o.UsePathStyle = pathStyle
		// Ranged GETs (how segments are read) carry no whole-object checksum, and the SDK
		// would print a line for each to stderr; segments carry their own CRC32C.
		o.DisableLogOutputChecksumValidationSkipped = true
		// Segments carry CRC32C over every section, checked on every read; a second
		// checksum of each PUT body costs the agent about a tenth of its CPU at load.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		if !opts.SignedPayload {
			o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
		}
	})
	s := &S3Store{client: client, bucket: opts.Bucket, name: "s3://" + opts.Bucket}
	if opts.Prefix != "" {
		s.prefix = opts.Prefix + "/"
		s.name += "/" + opts.Prefix
	}
	if opts.Endpoint != "" {
		s.name += " at " + opts.Endpoint
	}
	if opts.CreateBucket {
		if err := s.EnsureBucket(ctx); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

func (s *S3Store) String() string { return s.name }

func (s *S3Store) key(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return s.prefix + key, nil
}

// EnsureBucket creates the bucket unless it exists already.
func (s *S3Store) EnsureBucket(ctx context.Context) error {
	_, err := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.bucket})
	var owned *s3types.BucketAlreadyOwnedByYou
	var exists *s3types.BucketAlreadyExists
	if err == nil || errors.As(err, &owned) || errors.As(err, &exists) {
		return nil
	}
	return fmt.Errorf("create bucket %s: %w", s.bucket, s3Err(err))
}

// Put implements Store. S3 replaces objects atomically.
func (s *S3Store) Put(ctx context.Context, key string, parts ...[]byte) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	var body io.ReadSeeker
	if len(parts) == 1 {
		body = bytes.NewReader(parts[0])
	} else {
		body = newPartsReader(parts)
	}
	size, err := body.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = body.Seek(0, io.SeekStart)
	}
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", s.name, key, err)
	}
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &k, Body: body, ContentLength: aws.Int64(size),
	})
	if err != nil {
		return fmt.Errorf("put %s/%s: %w", s.name, key, s3Err(err))
	}
	return nil
}

// Get implements Store.
func (s *S3Store) Get(ctx context.Context, key string) ([]byte, error) {
	k, err := s.key(key)
	if err != nil {
		return nil, err
	}
	return s.get(ctx, key, &s3.GetObjectInput{Bucket: &s.bucket, Key: &k})
}

// GetRange implements Store with one ranged GET.
func (s *S3Store) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if err := checkRange(off, n); err != nil {
		return nil, err
	}
	in, err := s.rangeInput(key, off, n)
	if err != nil {
		return nil, err
	}
	return s.get(ctx, key, in)
}

// GetParts implements PartsGetter with one ranged GET, its body read straight into each
// part's buffer.
func (s *S3Store) GetParts(ctx context.Context, key string, off int64, sizes []int64) ([][]byte, error) {
	if err := checkParts(off, sizes); err != nil {
		return nil, err
	}
	total := sum(sizes)
	in, err := s.rangeInput(key, off, total)
	if err != nil {
		return nil, err
	}
	out, err := s.open(ctx, key, in)
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	if out.ContentLength != nil && *out.ContentLength != total {
		return nil, fmt.Errorf("get %s/%s: %w: %d bytes at %d, want %d", s.name, key, ErrInvalidRange, *out.ContentLength, off, total)
	}
	parts := make([][]byte, len(sizes))
	for i, n := range sizes {
		parts[i] = make([]byte, n)
		if _, err := io.ReadFull(out.Body, parts[i]); err != nil {
			return nil, fmt.Errorf("get %s/%s: read body: %w", s.name, key, err)
		}
	}
	return parts, nil
}

// rangeInput is the GET of n bytes of key from off.
func (s *S3Store) rangeInput(key string, off, n int64) (*s3.GetObjectInput, error) {
	k, err := s.key(key)
	if err != nil {
		return nil, err
	}
	rng := fmt.Sprintf("bytes=%d-%d", off, off+n-1)
	return &s3.GetObjectInput{Bucket: &s.bucket, Key: &k, Range: &rng}, nil
}

// open sends a GET; the caller reads and closes the body.
func (s *S3Store) open(ctx context.Context, key string, in *s3.GetObjectInput) (*s3.GetObjectOutput, error) {
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("get %s/%s: %w", s.name, key, s3Err(err))
	}
	return out, nil
}

func (s *S3Store) get(ctx context.Context, key string, in *s3.GetObjectInput) ([]byte, error) {
	out, err := s.open(ctx, key, in)
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	size := int64(0)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	if _, err := io.Copy(buf, out.Body); err != nil {
		return nil, fmt.Errorf("get %s/%s: read body: %w", s.name, key, err)
	}
	if out.ContentLength != nil && int64(buf.Len()) != size {
		return nil, fmt.Errorf("get %s/%s: body has %d bytes, content length %d", s.name, key, buf.Len(), size)
	}
	return buf.Bytes(), nil
}

// Head implements Store.
func (s *S3Store) Head(ctx context.Context, key string) (ObjectInfo, error) {
	k, err := s.key(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &k})
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("head %s/%s: %w", s.name, key, s3Err(err))
	}
	return ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

// List implements Store, following continuation tokens to the end.
func (s *S3Store) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	full := s.prefix + prefix
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &full})
	var out []ObjectInfo
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s/%s: %w", s.name, prefix, s3Err(err))
		}
		for _, o := range page.Contents {
			out = append(out, ObjectInfo{
				Key: strings.TrimPrefix(aws.ToString(o.Key), s.prefix), Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified),
			})
		}
	}
	return out, nil
}

// Delete implements Store.
func (s *S3Store) Delete(ctx context.Context, key string) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &k}); err != nil {
		if err := s3Err(err); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("delete %s/%s: %w", s.name, key, err)
		}
	}
	return nil
}

// Clock implements Store with a HeadBucket: its answer's Date header is the store's
// time when it answered, truncated to the second. Behind a load balancer it is the
// clock of whichever node answered: skew among the store's own nodes is not covered.
func (s *S3Store) Clock(ctx context.Context) (time.Time, error) {
	out, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	if err != nil {
		return time.Time{}, fmt.Errorf("clock of %s: %w", s.name, s3Err(err))
	}
	t, ok := awsmiddleware.GetServerTime(out.ResultMetadata)
	if !ok {
		return time.Time{}, fmt.Errorf("clock of %s: its answer has no Date header", s.name)
	}
	return t, nil
}

// Check implements Store with a HeadBucket.
func (s *S3Store) Check(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket}); err != nil {
		err = s3Err(err)
		if errors.Is(err, ErrNotFound) {
			err = fmt.Errorf("%w (%w)", ErrNoBucket, err)
		}
		return fmt.Errorf("check %s: %w", s.name, err)
	}
	return nil
}

// s3Err maps S3 error codes and statuses to the package's sentinels, keeping the original.
func s3Err(err error) error {
	var api smithy.APIError
	code := ""
	if errors.As(err, &api) {
		code = api.ErrorCode()
	}
	status := 0
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	switch {
	case code == "NoSuchBucket":
		return fmt.Errorf("%w (%w)", ErrNoBucket, err)
	case code == "NoSuchKey" || code == "NotFound" || status == http.StatusNotFound:
		return fmt.Errorf("%w (%w)", ErrNotFound, err)
	case code == "InvalidRange" || status == http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%w (%w)", ErrInvalidRange, err)
	case code == "AccessDenied" || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" ||
		code == "InvalidToken" || code == "ExpiredToken" || status == http.StatusForbidden || status == http.StatusUnauthorized:
		return fmt.Errorf("%w: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (%w)", ErrAuth, err)
	}
	return err
}
