// Package kafka_test drives StreamHouse agents (separate processes, real etcd, real MinIO)
// with Kafka clients no one here wrote: franz-go's kgo and kadm. Only the gRPC client
// used to check interoperation is ours.
package kafka_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/segmentstore/objstore"
	"github.com/streamhouse/streamhouse/tests/harness"
)

var (
	etcd  *harness.Etcd
	minio *harness.MinIO
)

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, harness.Services{Etcd: &etcd, MinIO: &minio, Streamhouse: true}))
}

var clusters atomic.Int64

// cluster is a set of agent processes sharing one etcd root and one bucket.
type cluster struct {
	t      testing.TB
	root   string
	bucket string
	dir    string
	agents []*harness.Agent
}

// newCluster starts agents in zones zone-a, zone-b, zone-c, ... in turn; args are extra
// flags of agent i (nil: none).
func newCluster(t testing.TB, agents int, args func(i int) []string) *cluster {
	t.Helper()
	n := clusters.Add(1)
	c := &cluster{t: t, root: fmt.Sprintf("/kafka-test/%d", n), bucket: fmt.Sprintf("kafka-%d-%d", os.Getpid(), n), dir: t.TempDir()}
	if _, err := objstore.OpenS3(context.Background(), objstore.S3Options{Bucket: c.bucket, Endpoint: minio.Endpoint,
		AccessKey: minio.AccessKey, SecretKey: minio.SecretKey, CreateBucket: true}); err != nil {
		t.Fatal(err)
	}
	for i := range agents {
		var extra []string
		if args != nil {
			extra = args(i)
		}
		c.addAgent(fmt.Sprintf("agent-%d", i+1), fmt.Sprintf("zone-%c", 'a'+i%3), extra)
	}
	return c
}

func (c *cluster) addAgent(node, zone string, args []string) *harness.Agent {
	c.t.Helper()
	a, err := harness.StartAgent(context.Background(), c.dir, harness.AgentConfig{
		Node: node, Zone: zone, Etcd: etcd.Endpoint, EtcdRoot: c.root, SessionTTL: 2 * time.Second,
		StoreURL: "s3://" + c.bucket + "?endpoint=" + minio.Endpoint,
		Env:      []string{"AWS_ACCESS_KEY_ID=" + minio.AccessKey, "AWS_SECRET_ACCESS_KEY=" + minio.SecretKey, "AWS_REGION=us-east-1"},
		Args:     args,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.agents = append(c.agents, a)
	c.t.Cleanup(func() {
		if c.t.Failed() {
			c.t.Logf("%s log tail:\n%s", a.Config.Node, a.Process.LogTail(4000))
		}
		_ = a.Signal(syscall.SIGCONT)
		if err := a.Stop(); err != nil {
			c.t.Error(err)
		}
	})
	return a
}

// seeds are the Kafka addresses of the agents, for a client's bootstrap.
func (c *cluster) seeds() []string {
	var out []string
	for _, a := range c.agents {
		out = append(out, a.KafkaAddr)
	}
	return out
}

// client returns a kgo client of the cluster, closed at the end of the test.
func (c *cluster) client(opts ...kgo.Opt) *kgo.Client {
	c.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.seeds()...)}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cl.Close)
	return cl
}

// createTopic creates a topic through Kafka's CreateTopics (kadm).
func (c *cluster) createTopic(name string, partitions int32, configs map[string]*string) {
	c.t.Helper()
	adm := kadm.NewClient(c.client())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopic(ctx, partitions, 1, configs, name)
	if err != nil || resp.Err != nil {
		c.t.Fatalf("create topic %s: %v %v", name, err, resp.Err)
	}
}

// grpc dials an agent's gRPC API.
func (c *cluster) grpc(i int) pb.StreamHouseClient {
	c.t.Helper()
	conn, err := grpc.NewClient(c.agents[i].GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = conn.Close() })
	return pb.NewStreamHouseClient(conn)
}

// consumeAll reads every partition of topic from the start, with a kgo consumer that
// names no group, until it has n records and every partition up to its end offset (or
// the timeout): a record written past the n expected, a duplicate, is read too.
func (c *cluster) consumeAll(topic string, n int, timeout time.Duration) []*kgo.Record {
	c.t.Helper()
	cl := c.client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	if err := c.readToEnd(cl, topic, n, timeout, func(r *kgo.Record) error {
		out = append(out, r)
		return nil
	}); err != nil {
		c.t.Logf("consume %s: %v", topic, err)
	}
	return out
}

// readToEnd polls consumer, which reads topic from its start, until it has read n
// records and then every partition up to the end offset it has once those n are read, or
// until the timeout (an error). Stopping at n alone would miss what a test is there to
// catch: a record written twice, past the n expected. each sees every record; its error
// ends the read.
func (c *cluster) readToEnd(consumer *kgo.Client, topic string, n int, timeout time.Duration, each func(*kgo.Record) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	read, next := 0, map[int32]int64{} // records read; the offset after each partition's last
	var ends map[int32]int64
	deadline, _ := ctx.Deadline()
	atEnd := func() (bool, error) {
		if read < n {
			return false, nil
		}
		if ends == nil {
			// Asked again on an error (a moment's, as a client's retries would ride out).
			err := harness.WaitFor(time.Until(deadline), func() (err error) {
				ends, err = endOffsets(ctx, consumer, topic)
				return err
			})
			if err != nil {
				return false, err
			}
		}
		for p, end := range ends {
			if next[p] < end {
				return false, nil
			}
		}
		return true, nil
	}
	for {
		if done, err := atEnd(); done || err != nil {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("read %d records of %d, up to offsets %v of %v: %w", read, n, next, ends, ctx.Err())
		}
		fs := consumer.PollFetches(ctx)
		fs.EachError(func(t string, p int32, err error) {
			if ctx.Err() == nil {
				c.t.Logf("fetch %s/%d: %v", t, p, err)
			}
		})
		for _, r := range fs.Records() {
			read++
			next[r.Partition] = r.Offset + 1
			if err := each(r); err != nil {
				return err
			}
		}
	}
}

// endOffsets lists the end offset of each of topic's partitions (Kafka's ListOffsets),
// asking through cl.
func endOffsets(ctx context.Context, cl *kgo.Client, topic string) (map[int32]int64, error) {
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = listed.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list the end offsets of %s: %w", topic, err)
	}
	ends := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	return ends, nil
}
