package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/streamhouse/streamhouse/actors/partitionpb"
	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
)

// produce sends the lines of its standard input as they come: whatever was read while the
// last request was out goes in the next one, up to stdinBatchRecords lines or
// stdinBatchBytes of records (the line that reaches it included: far below the agent's
// --max-batch-bytes, 16 MiB, whatever the lines hold), each line of up to stdinMaxLine.
const (
	stdinBatchRecords = 500
	stdinBatchBytes   = 1 << 20
	stdinMaxLine      = 1 << 20
)

func (c *cli) produceCmd() *cobra.Command {
	var key, keySep string
	var partition int32
	var headers, values []string
	cmd := &cobra.Command{
		Use:   "produce TOPIC [VALUE...] [--value VALUE...]",
		Short: "produce records: the values given, or one per line of standard input",
		Long: `Produces each VALUE as a record, or, with no VALUE, each line of standard input, sent
as it comes (lines read while a request is out go in the next, up to 500 or 1 MiB).
Records with a key (--key for all of them, or each its own with --key-separator) go to the
partition Kafka's murmur2 hash of the key picks; those without go to one partition per
request, the next one each request (as Kafka's sticky partitioner does per batch);
--partition forces one. Prints the partition and offset of every acked record. Ctrl-C (or SIGTERM,
SIGHUP) sends the lines already read, then stops.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			req := &pb.ProduceRequest{Topic: args[0]}
			if cmd.Flags().Changed("partition") {
				req.Partition = &partition
			}
			var hs []*pb.Header
			for _, h := range headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok {
					return fmt.Errorf("--header %q: want key=value", h)
				}
				hs = append(hs, &pb.Header{Key: k, Value: []byte(v)})
			}
			overhead := 0 // what each record carries besides its value
			for _, h := range hs {
				overhead += len(h.Key) + len(h.Value) + partitionpb.HeaderOverhead
			}
			if cmd.Flags().Changed("key") {
				if keySep != "" {
					return errors.New("--key gives every record one key, --key-separator each its own: not both")
				}
				overhead += len(key)
			}
			add := func(v string) {
				r := &pb.Record{Value: []byte(v), Headers: hs}
				if cmd.Flags().Changed("key") {
					r.Key = []byte(key)
				}
				if k, val, ok := strings.Cut(v, keySep); keySep != "" && ok {
					r.Key, r.Value = []byte(k), []byte(val)
				}
				req.Records = append(req.Records, r)
			}
			send := func() error {
				if len(req.Records) == 0 {
					return nil
				}
				resp, err := cl.Produce(context.WithoutCancel(cmd.Context()), req)
				if err != nil {
					return err
				}
				for _, a := range resp.Acks {
					fmt.Fprintf(c.stdout, "%s/%d@%d\n", req.Topic, a.Partition, a.Offset)
				}
				req.Records = req.Records[:0]
				return nil
			}
			if len(values) > 0 && len(args) > 1 {
				// pflag hands the --value ones over apart from the arguments: their order
				// among them, which the records' offsets would follow, is lost.
				return errors.New("give the values as arguments or with --value, not both: their order would be lost")
			}
			if values = append(values, args[1:]...); len(values) > 0 {
				for _, v := range values {
					add(v)
				}
				return send()
			}
			// Interrupted (Ctrl-C, SIGTERM, SIGHUP), it sends the lines it has read and
			// stops, as Kafka's console producer flushes on close: every line read is acked
			// or its error printed. Each request is still bounded by --timeout.
			if f, ok := c.stdin.(*os.File); ok {
				if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
					// A terminal: say what it waits for, rather than seem to hang.
					fmt.Fprintf(cmd.ErrOrStderr(), "reading records from the terminal, one a line, to %s (Ctrl-D to end)\n", req.Topic)
				}
			}
			lines := newLineBatcher(c.stdin, stdinMaxLine, stdinBatchRecords, stdinBatchBytes, overhead)
			for interrupted, acked := false, 0; ; {
				batch, err := lines.next(cmd.Context())
				for _, v := range batch {
					add(v)
				}
				if err := send(); err != nil {
					// The server counts records within its request ("record 3"): say which
					// lines that request held, and that those before it were written.
					return fmt.Errorf("lines %d-%d of the input, the request that failed (record i of the error is line %d+i; the %d lines before were acked): %w",
						acked+1, acked+len(batch), acked+1, acked, err)
				}
				acked += len(batch)
				switch {
				case len(batch) == 0 && cmd.Context().Err() != nil, interrupted:
					return nil
				case err != nil || len(batch) == 0:
					return err // the input's error, or its end
				case cmd.Context().Err() != nil:
					interrupted = true // once more, for the lines read while that went
				}
			}
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the key of every record (default: none: a request's records go to one partition, the next one each request)")
	cmd.Flags().StringVar(&keySep, "key-separator", "", "each value (line or VALUE) is KEY, this separator, then the value, as kcat -K; a value without it has no key")
	cmd.Flags().Int32Var(&partition, "partition", 0, "partition to write to (default: by key, or the next one each request)")
	cmd.Flags().StringArrayVar(&headers, "header", nil, "header key=value (repeatable)")
	cmd.Flags().StringArrayVar(&values, "value", nil, "a record's value, as a VALUE argument (repeatable; the original streamctl's flag)")
	return cmd
}
