package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	pb "github.com/streamhouse/streamhouse/gateway/streamhousepb"
	"github.com/streamhouse/streamhouse/tests/harness"
)

// TestHealthFollowsMembership: an agent that lost its session (etcd away past its TTL)
// answers the gRPC health check NOT_SERVING until it has rejoined the cluster, then
// SERVING again. Before, it said SERVING throughout, while it answered every request
// Unavailable, so a load balancer checking it kept sending it clients.
func TestHealthFollowsMembership(t *testing.T) {
	tc := newCluster(t, 1, 2*time.Second)
	_, conn := dial(t, tc.agents[0].GRPCAddr)
	hc := healthpb.NewHealthClient(conn)
	want := func(status healthpb.HealthCheckResponse_ServingStatus, within time.Duration) {
		t.Helper()
		harness.Eventually(t, within, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			for _, service := range []string{"", pb.StreamHouse_ServiceDesc.ServiceName} {
				h, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
				if err != nil || h.Status != status {
					return fmt.Errorf("health of %q: %v, %v; want %s", service, h, err, status)
				}
			}
			return nil
		})
	}
	want(healthpb.HealthCheckResponse_SERVING, 30*time.Second)
	if err := etcd.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			if err := etcd.Restart(context.Background()); err != nil {
				t.Errorf("restart etcd: %v", err)
			}
		}
	})
	want(healthpb.HealthCheckResponse_NOT_SERVING, 30*time.Second)
	// Nor does it describe a cluster it is not part of: no members, the partitions its
	// stale mirror holds (exit 0 for `streamctl cluster status`).
	api := pb.NewStreamHouseClient(conn)
	harness.Eventually(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if st, err := api.ClusterStatus(ctx, &pb.ClusterStatusRequest{}); status.Code(err) != codes.Unavailable {
			return fmt.Errorf("cluster status while rejoining: %v, %v; want Unavailable", st, err)
		}
		return nil
	})
	restarted = true
	if err := etcd.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	want(healthpb.HealthCheckResponse_SERVING, 60*time.Second)
	if st, err := api.ClusterStatus(context.Background(), &pb.ClusterStatusRequest{}); err != nil || len(st.Members) != 1 {
		t.Fatalf("cluster status once rejoined: %v, %v; want its one member", st, err)
	}
}
