package main

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/streamhouse/streamhouse/gateway"
)

// A client that pings every 10 s, as one must to keep an idle stream (a Subscribe
// waiting for records) through proxies that cut quiet connections, keeps its connection:
// with gRPC's default enforcement (one ping per 5 minutes, none without a stream) the
// server sent GOAWAY too_many_pings after the third, ending every stream of the
// connection.
func TestAClientThatPingsKeepsItsConnection(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(apiServerOptions(gateway.Limits{})...)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if st := conn.GetState(); st != connectivity.Ready {
		t.Fatalf("connection %v after a call", st)
	}
	// Four pings' time, idle: the connection stays ready (a GOAWAY moves it to idle).
	if conn.WaitForStateChange(ctx, connectivity.Ready) {
		t.Fatalf("the connection went %v while its client pinged every 10 s", conn.GetState())
	}
}
