package ginsse_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// needBinary skips the test when name is not installed, or fails it when
// GINSSE_REQUIRE_REDIS is set (CI sets it).
func needBinary(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := name + " not found: install redis-server (apt-get install redis-server) to run this test"
	if os.Getenv("GINSSE_REQUIRE_REDIS") != "" {
		t.Fatal(msg + " (GINSSE_REQUIRE_REDIS is set)")
	}
	t.Skip(msg)
	return ""
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitPing waits for a Redis process that is starting up to answer.
func waitPing(t testing.TB, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	require.Eventually(t, func() bool {
		return c.Ping(context.Background()).Err() == nil
	}, 10*time.Second, 20*time.Millisecond, "redis-server on %s did not start", addr)
}

// redisProc is a redis-server that a test started on a loopback port,
// without persistence, as Redis runs here.
type redisProc struct {
	t    testing.TB
	port string
	cmd  *exec.Cmd
}

// startRedis starts a redis-server on a free port; it ends with the test.
func startRedis(t testing.TB) *redisProc {
	t.Helper()
	needBinary(t, "redis-server")
	r := &redisProc{t: t, port: strconv.Itoa(freePort(t))}
	r.start()
	t.Cleanup(r.kill)
	return r
}

func (r *redisProc) Addr() string { return "127.0.0.1:" + r.port }

func (r *redisProc) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", r.port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.t.TempDir())
	require.NoError(r.t, r.cmd.Start())
	waitPing(r.t, r.Addr())
}

// kill ends the server at once, as a crash does.
func (r *redisProc) kill() {
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// restart kills the server and starts an empty one on the same port.
func (r *redisProc) restart() {
	r.t.Helper()
	r.kill()
	r.start()
}

// client returns a go-redis client for inspection, closed with the test.
func (r *redisProc) client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	r.t.Cleanup(func() { c.Close() })
	return c
}
