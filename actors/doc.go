// Package actors runs partitions as protoactor-go virtual actors: the cluster wiring (etcd
// membership, disthash placement, gRPC remote), the partition actor that batches produce
// requests into fenced segments, and the rebalancer that keeps every partition activated
// on its rendezvous owner. DESIGN.md §5 and §7 describe it; the "Partition actors" issue
// builds it.
//
// Until that code lands, the blank imports below pin the protoactor-go modules in go.mod
// (the version DESIGN.md §7 measured) and keep them building against our etcd and gRPC.
package actors

import (
	_ "github.com/asynkron/protoactor-go/cluster"
	_ "github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	_ "github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	_ "github.com/asynkron/protoactor-go/remote"
)
