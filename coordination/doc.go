// Package coordination keeps StreamHouse's metadata in etcd: the key layout, a watched
// keyspace mirror, node sessions, partition leases whose revision is the epoch that fences
// every write, topic specs, the segment index and consumer-group offsets. DESIGN.md §3–4
// describe it; the "Coordination" issue builds it.
//
// Until that code lands, the blank import below pins the etcd client in go.mod.
package coordination

import _ "go.etcd.io/etcd/client/v3"
