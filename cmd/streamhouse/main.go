// Command streamhouse runs StreamHouse: `streamhouse agent` on every node of a cluster and
// `streamhouse dev` for a single-process cluster on a laptop (embedded etcd, local store).
package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

const usage = `streamhouse runs a StreamHouse node.

Usage:
  streamhouse agent     run an agent of a cluster (etcd + object store)
  streamhouse dev       run a single-process cluster with embedded etcd and a local store
  streamhouse ls URL [PREFIX]   list the objects of a store (s3://… or file://…)
  streamhouse probe U   health check for containers: http(s)://… answers 200, grpc://… is SERVING
  streamhouse version   print the build version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "version":
		fmt.Fprintln(stdout, "streamhouse", version())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "agent":
		return runAgent(args[1:], stderr)
	case "dev":
		return runDev(args[1:], stdout, stderr)
	case "probe":
		return runProbe(args[1:], stderr)
	case "ls":
		return runLs(args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "streamhouse: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
