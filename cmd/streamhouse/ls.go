package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/streamhouse/streamhouse/segmentstore/objstore"
)

// runLs lists the objects of a store: `streamhouse ls STORE_URL [PREFIX]`, with the same
// URLs and AWS_* environment as the agent.
func runLs(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 || len(args) > 2 {
		fmt.Fprintln(stderr, "usage: streamhouse ls STORE_URL [PREFIX]")
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, err := objstore.Open(ctx, args[0])
	if err != nil {
		fmt.Fprintln(stderr, "streamhouse ls:", err)
		return 2
	}
	prefix := ""
	if len(args) == 2 {
		prefix = args[1]
	}
	objs, err := store.List(ctx, prefix)
	if err != nil {
		fmt.Fprintln(stderr, "streamhouse ls:", err)
		return 1
	}
	for _, o := range objs {
		fmt.Fprintf(stdout, "%10d  %s  %s\n", o.Size, o.ModTime.UTC().Format(time.RFC3339), o.Key)
	}
	return 0
}
