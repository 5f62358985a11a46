package harness

import (
	"bufio"
	"net"
	"testing"
	"time"
)

func TestProxyCutAndHeal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // a line echo server
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					_, _ = c.Write([]byte(line))
				}
			}()
		}
	}()
	p, err := StartProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// A cut must hold past 300 ms; a working proxy answers within 5 s however loaded the
	// machine.
	echo := func(c net.Conn, wait time.Duration) error {
		_ = c.SetDeadline(time.Now().Add(wait))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return err
		}
		_, err := bufio.NewReader(c).ReadString('\n')
		return err
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	before := dial()
	if err := echo(before, 5*time.Second); err != nil {
		t.Fatalf("through the proxy: %v", err)
	}
	p.Cut()
	if err := echo(before, 300*time.Millisecond); err == nil {
		t.Fatal("a connection survived the cut")
	}
	if err := echo(dial(), 300*time.Millisecond); err == nil {
		t.Fatal("a new connection was answered while cut")
	}
	p.Heal()
	if err := echo(dial(), 5*time.Second); err != nil {
		t.Fatalf("after heal: %v", err)
	}
}
