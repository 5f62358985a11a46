package harness

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// MinIO credentials of every test server; they exist only on loopback for one test run.
const (
	MinIOAccessKey = "streamhouse-test"
	MinIOSecretKey = "streamhouse-test-secret"
)

// MinIO is a real MinIO server started from ./bin/minio.
type MinIO struct {
	// Endpoint is the S3 API base URL, http://127.0.0.1:<port>.
	Endpoint  string
	AccessKey string
	SecretKey string
	Process   *Process

	dir  string
	args []string
}

// StartMinIO starts a single-drive MinIO with its data in dir and waits until it serves.
// It runs with --no-compat, as deploy/compose does: ETags are not the MD5 of the body
// (nothing here reads them), which saves MinIO hashing every byte written.
func StartMinIO(ctx context.Context, dir string) (*MinIO, error) {
	return StartMinIOWith(ctx, dir, MinIOOptions{})
}

// MinIOOptions configure StartMinIOWith. Zero fields take the documented defaults.
type MinIOOptions struct {
	// Drives is how many drives (directories under dir) MinIO stores objects on. With one
	// it writes every byte through the page cache; with more it erasure-codes objects
	// across them (EC:2 with 4) and writes with O_DIRECT. Default 1.
	Drives int
}

// StartMinIOWith is StartMinIO on opts.Drives drives.
func StartMinIOWith(ctx context.Context, dir string, opts MinIOOptions) (*MinIO, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	consolePort, err := FreePort()
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if opts.Drives > 1 {
		data += fmt.Sprintf("{1...%d}", opts.Drives) // MinIO's ellipsis: data1 ... dataN
	}
	addr := "127.0.0.1:" + itoa(port)
	m := &MinIO{Endpoint: "http://" + addr, AccessKey: MinIOAccessKey, SecretKey: MinIOSecretKey, dir: dir,
		args: []string{"server", "--no-compat", "--quiet", "--address", addr, "--console-address", "127.0.0.1:" + itoa(consolePort), data}}
	return m, m.start(ctx)
}

func (m *MinIO) start(ctx context.Context) error {
	bin, err := Binary("minio")
	if err != nil {
		return err
	}
	env := []string{
		"MINIO_ROOT_USER=" + MinIOAccessKey,
		"MINIO_ROOT_PASSWORD=" + MinIOSecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
		"HOME=" + m.dir,
	}
	p, err := StartProcess("minio", bin, m.args, env, filepath.Join(m.dir, fmt.Sprintf("minio-%d.log", time.Now().UnixNano())))
	if err != nil {
		return err
	}
	if err := waitReady(ctx, p, 60*time.Second, httpOK(m.Endpoint+"/minio/health/ready")); err != nil {
		_ = p.Stop(5 * time.Second)
		return err
	}
	m.Process = p
	return nil
}

// Restart starts MinIO again, on the same port and data, after it stopped or was killed.
func (m *MinIO) Restart(ctx context.Context) error {
	if err := m.Stop(); err != nil {
		return err
	}
	return m.start(ctx)
}

// Stop stops the server; the error says if it would not exit.
func (m *MinIO) Stop() error { return m.Process.Stop(10 * time.Second) }
