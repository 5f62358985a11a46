// Command streamctl is the StreamHouse command-line client: topics, produce, consume,
// consumer groups and the cluster's state, over the streamhouse.v1 gRPC API of any agent.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/streamhouse/streamhouse/gateway/grpcmem"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// AddrEnv names the variable that sets the agent address; --addr wins over it.
const AddrEnv = "STREAMHOUSE_ADDR"

func main() {
	// A closed terminal (SIGHUP) stops a command as Ctrl-C does: a group's reader commits
	// what it printed, a producer sends what it read.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	// A second Ctrl-C stops it at once, even while it commits or sends what it has.
	context.AfterFunc(ctx, stop)
	// A closed output (| head) fails a write with EPIPE, which consume takes for an end
	// (and commits what was printed), rather than killing the process.
	signal.Ignore(syscall.SIGPIPE)
	root, c := newRoot(os.Stdin, os.Stdout)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "streamctl:", describe(err, c.addr))
		os.Exit(1)
	}
}

// describe says what went wrong in a sentence: a gRPC status in err's chain is told by its
// code and message (not gRPC's "rpc error: code = ... desc = ...", and once however it
// was wrapped), and an agent that cannot be reached is named with how to reach one.
func describe(err error, addr string) string {
	var se interface {
		error
		GRPCStatus() *status.Status
	}
	if !errors.As(err, &se) {
		return err.Error()
	}
	st := se.GRPCStatus()
	told := fmt.Sprintf("%s: %s", st.Code(), st.Message())
	if st.Code() == codes.Unavailable && strings.Contains(st.Message(), "dial") {
		told = fmt.Sprintf("cannot reach an agent at %s (is one running? `make run` starts one; --addr or $%s names another): %s", addr, AddrEnv, st.Message())
	}
	// What wrapped the status ("commit the group's offsets: ...") stays.
	return strings.Replace(err.Error(), se.Error(), told, 1)
}

type cli struct {
	addr    string
	timeout time.Duration // of each call (--timeout)
	stdin   io.Reader
	stdout  io.Writer
	conn    *grpc.ClientConn
}

// defaultTimeout bounds each call to the agent (--timeout): an agent that cannot reach
// etcd holds a call as long as its caller waits.
const defaultTimeout = 30 * time.Second

// withTimeout bounds each unary call that has no deadline of its own by c.timeout, and
// says so when it ran out. A fetch's long-poll (at most a second here) is within it.
func (c *cli) withTimeout(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if _, ok := ctx.Deadline(); ok || c.timeout <= 0 {
		return invoke(ctx, method, req, reply, cc, opts...)
	}
	tctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	err := invoke(tctx, method, req, reply, cc, opts...)
	if err != nil && ctx.Err() == nil && ranOut(tctx, err, c.timeout) {
		return status.Errorf(codes.DeadlineExceeded, "%s did not answer %s within %s (--timeout)", c.addr, method[strings.LastIndex(method, "/")+1:], c.timeout)
	}
	return err
}

// ranOut says whether a call's error is its own deadline of timeout. gRPC sends the
// deadline to the server, whose copy may fire a moment before ours: the call then ends
// DeadlineExceeded while ctx has not yet. A DeadlineExceeded well before the deadline is
// the server's own (its etcd call timed out, say) and keeps its message.
func ranOut(ctx context.Context, err error, timeout time.Duration) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	deadline, ok := ctx.Deadline()
	return ok && status.Code(err) == codes.DeadlineExceeded && time.Until(deadline) <= timeout/10
}

func (c *cli) client() (pb.StreamHouseClient, error) {
	if c.conn == nil {
		addr := c.addr
		// The original StreamHouse took http://host:port; accept it.
		addr = strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "grpc://")
		// Message buffers from a pool that does not zero them (grpcmem): streamctl bench
		// sends and receives large messages at a high rate.
		opts := append(grpcmem.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithChainUnaryInterceptor(c.withTimeout),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)))
		conn, err := grpc.NewClient(addr, opts...)
		if err != nil {
			return nil, fmt.Errorf("connect to %s: %w", c.addr, err)
		}
		c.conn = conn
	}
	return pb.NewStreamHouseClient(c.conn), nil
}

func newRoot(stdin io.Reader, stdout io.Writer) (*cobra.Command, *cli) {
	c := &cli{stdin: stdin, stdout: stdout}
	def := os.Getenv(AddrEnv)
	if def == "" {
		def = "localhost:50051"
	}
	root := &cobra.Command{
		Use:           "streamctl",
		Short:         "StreamHouse command-line client",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if c.timeout < 0 {
				return fmt.Errorf("--timeout %s: 0 (no limit) or more", c.timeout)
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&c.addr, "addr", def, "address of any agent's client API ($"+AddrEnv+")")
	root.PersistentFlags().DurationVar(&c.timeout, "timeout", defaultTimeout, "how long each request to the agent may take (0: no limit)")
	root.AddCommand(c.topicCmd(), c.produceCmd(), c.consumeCmd(), c.groupCmd(), c.clusterCmd(), c.benchCmd())
	return root, c
}

func (c *cli) topicCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "topic", Short: "create, list, describe and delete topics"}
	var req pb.CreateTopicRequest
	create := &cobra.Command{
		Use: "create NAME", Short: "create a topic", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			req.Name = args[0]
			t, err := cl.CreateTopic(cmd.Context(), &req)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "created topic %s with %d partitions\n", t.Name, t.Partitions)
			return nil
		},
	}
	create.Flags().Int32Var(&req.Partitions, "partitions", 1, "number of partitions (1..10000)")
	create.Flags().Int64Var(&req.RetentionMs, "retention-ms", 0, "how long to keep data, -1 forever (default 7 days)")
	create.Flags().Int64Var(&req.LingerMs, "linger-ms", 0, "how long a partition waits to fill a segment, 1..60000 (0: the default, 5)")
	create.Flags().Int64Var(&req.SegmentBytes, "segment-bytes", 0, "segment size that seals a batch (default 8 MiB)")
	create.Flags().Int64Var(&req.RetentionBytes, "retention-bytes", 0, "stored bytes to keep per partition, -1 no limit (default -1)")
	create.Flags().Int64Var(&req.MergeBytes, "merge-bytes", 0, "size small segments are merged into (default 64 MiB)")
	var alt pb.AlterTopicRequest
	var retMs, retBytes, lingerMs, segBytes, mergeBytes int64
	alter := &cobra.Command{
		Use: "alter NAME", Short: "change a topic's retention, linger, segment or merge size", Args: cobra.ExactArgs(1),
		Long: `Changes the settings given; the others stay. 0 restores a setting's default. The partitions
pick the change up within a second or two: retention removes what the new limits expire at the
next pass, and new segments follow the new linger and segment size.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			alt.Name = args[0]
			for _, f := range []struct {
				name string
				v    *int64
				to   **int64
			}{{"retention-ms", &retMs, &alt.RetentionMs}, {"retention-bytes", &retBytes, &alt.RetentionBytes},
				{"linger-ms", &lingerMs, &alt.LingerMs}, {"segment-bytes", &segBytes, &alt.SegmentBytes}, {"merge-bytes", &mergeBytes, &alt.MergeBytes}} {
				if cmd.Flags().Changed(f.name) {
					*f.to = f.v
				}
			}
			if alt.RetentionMs == nil && alt.RetentionBytes == nil && alt.LingerMs == nil && alt.SegmentBytes == nil && alt.MergeBytes == nil {
				return fmt.Errorf("nothing to change: give at least one of --retention-ms --retention-bytes --linger-ms --segment-bytes --merge-bytes")
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			t, err := cl.AlterTopic(cmd.Context(), &alt)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "altered topic %s: retention %s, retention bytes %s, linger %dms, segment bytes %d, merge bytes %d\n",
				t.Name, retention(t.RetentionMs), retentionBytes(t.RetentionBytes), t.LingerMs, t.SegmentBytes, t.MergeBytes)
			return nil
		},
	}
	alter.Flags().Int64Var(&retMs, "retention-ms", 0, "how long to keep data, -1 forever")
	alter.Flags().Int64Var(&retBytes, "retention-bytes", 0, "stored bytes to keep per partition, -1 no limit")
	alter.Flags().Int64Var(&lingerMs, "linger-ms", 0, "how long a partition waits to fill a segment")
	alter.Flags().Int64Var(&segBytes, "segment-bytes", 0, "segment size that seals a batch")
	alter.Flags().Int64Var(&mergeBytes, "merge-bytes", 0, "size small segments are merged into")
	list := &cobra.Command{
		Use: "list", Short: "list topics", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			resp, err := cl.ListTopics(cmd.Context(), &pb.ListTopicsRequest{})
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(c.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "TOPIC\tPARTITIONS\tRETENTION\tRETENTION BYTES\tLINGER\tSEGMENT BYTES\tMERGE BYTES")
			for _, t := range resp.Topics {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%dms\t%d\t%d\n", t.Name, t.Partitions, retention(t.RetentionMs),
					retentionBytes(t.RetentionBytes), t.LingerMs, t.SegmentBytes, t.MergeBytes)
			}
			return w.Flush()
		},
	}
	describe := &cobra.Command{
		Use: "describe NAME", Short: "show a topic's partitions: owner, zone, epoch, log start, high-water mark, segments", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			d, err := cl.DescribeTopic(cmd.Context(), &pb.DescribeTopicRequest{Name: args[0]})
			if err != nil {
				return err
			}
			t := d.Topic
			fmt.Fprintf(c.stdout, "topic %s: %d partitions, retention %s, retention bytes %s, linger %dms, segments %d bytes, merged to %d bytes\n",
				t.Name, t.Partitions, retention(t.RetentionMs), retentionBytes(t.RetentionBytes), t.LingerMs, t.SegmentBytes, t.MergeBytes)
			w := tabwriter.NewWriter(c.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "PARTITION\tOWNER\tZONE\tEPOCH\tLOG START\tHWM\tSEGMENTS\tSTORED BYTES")
			for _, p := range d.Partitions {
				owner := p.Owner
				if owner == "" {
					owner = "(moving)"
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", p.Partition, owner, p.Zone, p.Epoch, p.LogStartOffset, p.HighWaterMark, p.Segments, p.StoredBytes)
			}
			return w.Flush()
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "delete a topic", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			if _, err := cl.DeleteTopic(cmd.Context(), &pb.DeleteTopicRequest{Name: args[0]}); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "deleted topic %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, describe, alter, del)
	return cmd
}

// retention shows retention_ms as the agents read it (coordination.TopicSpec.Retention,
// not imported: it would bring the etcd client into streamctl): past what a
// time.Duration holds, forever.
func retention(ms int64) string {
	if ms < 0 || ms > math.MaxInt64/int64(time.Millisecond) {
		return "forever"
	}
	return (time.Duration(ms) * time.Millisecond).String()
}

func retentionBytes(b int64) string {
	if b < 0 {
		return "unlimited"
	}
	return strconv.FormatInt(b, 10)
}

func (c *cli) groupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "consumer groups: list, offsets, commit"}
	list := &cobra.Command{
		Use: "list", Short: "list consumer groups", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			resp, err := cl.ListGroups(cmd.Context(), &pb.ListGroupsRequest{})
			if err != nil {
				return err
			}
			for _, g := range resp.Groups {
				fmt.Fprintln(c.stdout, g)
			}
			return nil
		},
	}
	offsets := &cobra.Command{
		Use: "offsets GROUP", Short: "show a group's committed offsets and its lag", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			resp, err := cl.FetchOffsets(cmd.Context(), &pb.FetchOffsetsRequest{Group: args[0]})
			if err != nil {
				return err
			}
			if len(resp.Offsets) == 0 {
				return fmt.Errorf("group %s has no committed offsets (streamctl group list names the groups that have)", args[0])
			}
			hwms := map[string]map[int32]int64{}
			w := tabwriter.NewWriter(c.stdout, 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "TOPIC\tPARTITION\tOFFSET\tHWM\tLAG")
			for _, o := range resp.Offsets {
				if hwms[o.Topic] == nil {
					hwms[o.Topic] = map[int32]int64{}
					d, err := cl.DescribeTopic(cmd.Context(), &pb.DescribeTopicRequest{Name: o.Topic})
					switch {
					case status.Code(err) == codes.NotFound: // deleted since: no end to measure lag against
					case err != nil:
						return err
					default:
						for _, p := range d.Partitions {
							hwms[o.Topic][p.Partition] = p.HighWaterMark
						}
					}
				}
				hwm, lag := "-", "-"
				if h, ok := hwms[o.Topic][o.Partition]; ok {
					hwm, lag = strconv.FormatInt(h, 10), strconv.FormatInt(h-o.Offset, 10)
				}
				fmt.Fprintf(w, "%s\t%d\t%d\t%s\t%s\n", o.Topic, o.Partition, o.Offset, hwm, lag)
			}
			return w.Flush()
		},
	}
	var topic string
	var partition int32
	var offset int64
	commit := &cobra.Command{
		Use: "commit GROUP", Short: "commit an offset for a group", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Defaulted, they would move the group to the start of partition 0.
			for _, f := range []string{"topic", "partition", "offset"} {
				if !cmd.Flags().Changed(f) {
					return fmt.Errorf("--%s is required", f)
				}
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			_, err = cl.CommitOffsets(cmd.Context(), &pb.CommitOffsetsRequest{Group: args[0],
				Offsets: []*pb.PartitionOffset{{Topic: topic, Partition: partition, Offset: offset}}})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "group %s: %s/%d committed at %d\n", args[0], topic, partition, offset)
			return nil
		},
	}
	commit.Flags().StringVar(&topic, "topic", "", "topic (required)")
	commit.Flags().Int32Var(&partition, "partition", 0, "partition (required)")
	commit.Flags().Int64Var(&offset, "offset", 0, "the next offset the group will read (required)")
	cmd.AddCommand(list, offsets, commit)
	return cmd
}

func (c *cli) clusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "the cluster's state"}
	statusCmd := &cobra.Command{
		Use: "status", Short: "agents with their zones and the partitions each owns, with epochs", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			st, err := cl.ClusterStatus(cmd.Context(), &pb.ClusterStatusRequest{})
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "%d agents, %d topics, %d partitions (%d moving)\n\n", len(st.Members), st.Topics, st.Partitions, st.Unowned)
			for _, m := range st.Members {
				fmt.Fprintf(c.stdout, "Agent: %s (zone %s, %s)\n  Assigned partitions (%d):\n", m.Node, orDash(m.Zone), m.Address, len(m.Partitions))
				sort.Slice(m.Partitions, func(i, j int) bool {
					a, b := m.Partitions[i], m.Partitions[j]
					return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
				})
				for _, p := range m.Partitions {
					fmt.Fprintf(c.stdout, "    - %s:%d (epoch %d)\n", p.Topic, p.Partition, p.Epoch)
				}
				fmt.Fprintln(c.stdout)
			}
			return nil
		},
	}
	cmd.AddCommand(statusCmd)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
