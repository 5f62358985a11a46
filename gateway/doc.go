// Package gateway is the client-facing gRPC API (streamhouse.v1) that every agent serves:
// admin, produce, fetch and consumer-group calls, routed to each partition's owner through
// the cluster. DESIGN.md §8 describes it; the "Gateway" issue builds it.
//
// Until that code lands, the blank import below pins google.golang.org/grpc in go.mod.
package gateway

import _ "google.golang.org/grpc"
