package harness

import (
	"context"
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
}

// StartMinIO starts a single-drive MinIO with its data in dir and waits until it serves.
func StartMinIO(ctx context.Context, dir string) (*MinIO, error) {
	bin, err := Binary("minio")
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	consolePort, err := FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + itoa(port)
	args := []string{"server", "--quiet", "--address", addr, "--console-address", "127.0.0.1:" + itoa(consolePort), filepath.Join(dir, "data")}
	env := []string{
		"MINIO_ROOT_USER=" + MinIOAccessKey,
		"MINIO_ROOT_PASSWORD=" + MinIOSecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
		"HOME=" + dir,
	}
	p, err := StartProcess("minio", bin, args, env, filepath.Join(dir, "minio.log"))
	if err != nil {
		return nil, err
	}
	m := &MinIO{Endpoint: "http://" + addr, AccessKey: MinIOAccessKey, SecretKey: MinIOSecretKey, Process: p}
	err = waitReady(ctx, p, 60*time.Second, httpOK(m.Endpoint+"/minio/health/ready"))
	if err != nil {
		_ = p.Stop(5 * time.Second)
		return nil, err
	}
	return m, nil
}

// Stop stops the server; the error says if it would not exit.
func (m *MinIO) Stop() error { return m.Process.Stop(10 * time.Second) }
