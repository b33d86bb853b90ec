package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the tests that stop Redis cause
	// many on purpose.
	redis.SetLogger(quietLogger{})
	goleak.VerifyTestMain(m,
		// After a run of failed dials go-redis probes the address in the
		// background, sleeping a second between tries; it returns at its
		// next wake-up once the client is closed, which may be after the
		// last test.
		goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"),
		goleak.Cleanup(func(code int) {
			stopShared()
			os.Exit(code)
		}))
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// server is a redis-server child process started by a test.
type server struct {
	bin  string
	addr string
	port int
	args []string
	cmd  *exec.Cmd
}

var shared struct {
	once sync.Once
	addr string
	srv  *server // nil when REDIS_ADDR is used
	dir  string  // the server's working directory
	err  error
}

func stopShared() {
	if shared.srv != nil {
		shared.srv.stop()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
}

// redisAddr returns the address of a Redis server for the test: REDIS_ADDR
// if set (failing the test when it cannot be reached), else one
// redis-server started for the whole package. It skips only when neither
// exists.
func redisAddr(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		if addr := os.Getenv("REDIS_ADDR"); addr != "" {
			if err := ping(addr, 5*time.Second); err != nil {
				shared.err = fmt.Errorf("REDIS_ADDR=%s is set but Redis cannot be reached: %w", addr, err)
			}
			shared.addr = addr
			return
		}
		shared.dir, shared.err = os.MkdirTemp("", "redisstore-test-")
		if shared.err != nil {
			return
		}
		shared.srv, shared.err = startServer(shared.dir, "--save", "", "--appendonly", "no")
		if shared.srv != nil {
			shared.addr = shared.srv.addr
		}
	})
	if shared.err == errNoServer {
		t.Skip("no Redis: set REDIS_ADDR or install redis-server (apt-get install redis-server)")
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.addr
}

var errNoServer = fmt.Errorf("redis-server is not on PATH")

// ownServer starts a redis-server for this test alone, with extra args,
// and stops it when the test ends. It skips when redis-server is missing.
func ownServer(t testing.TB, args ...string) *server {
	t.Helper()
	srv, err := startServer(t.TempDir(), args...)
	if err == errNoServer {
		t.Skip("redis-server is not on PATH (apt-get install redis-server)")
	}
	if err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	t.Cleanup(srv.stop)
	return srv
}

func startServer(dir string, args ...string) (*server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errNoServer
	}
	// A free port may be taken between Close and redis-server's bind:
	// try a few.
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		srv := &server{
			bin:  bin,
			addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			port: port,
			args: append([]string{"--dir", dir, "--logfile", filepath.Join(dir, "redis.log")}, args...),
		}
		if err = srv.start(); err == nil {
			return srv, nil
		}
	}
	return nil, err
}

func (s *server) start() error {
	args := append([]string{"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1"}, s.args...)
	s.cmd = exec.Command(s.bin, args...)
	if err := s.cmd.Start(); err != nil {
		return err
	}
	if err := ping(s.addr, 10*time.Second); err != nil {
		s.stop()
		return fmt.Errorf("redis-server on %s did not answer: %w", s.addr, err)
	}
	return nil
}

// stop ends the server and waits for it: SIGTERM lets it write its
// append-only file, when it has one, before it exits.
func (s *server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	s.cmd = nil
}

// restart stops the server and starts it again on the same port.
func (s *server) restart(t testing.TB) {
	t.Helper()
	s.stop()
	var err error
	for range 50 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond) // the port may not be free yet
	}
	t.Fatalf("restarting redis-server: %v", err)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping waits up to d for the server at addr to answer PING.
func ping(addr string, d time.Duration) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond) // polling a process we started, not ordering goroutines
	}
}

// newClient returns a client for addr that the test closes.
func newClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// testKey returns a key no other test uses, with a hash tag as on Cluster.
func testKey(t testing.TB) string {
	var b [6]byte
	rand.Read(b[:])
	return "{" + t.Name() + "-" + hex.EncodeToString(b[:]) + "}:token"
}

// newStore returns a Store on its own client at a fresh key of the shared
// server, with a short poll interval.
func newStore(t testing.TB) *Store {
	t.Helper()
	addr := redisAddr(t)
	s := New(newClient(t, addr), testKey(t))
	s.PollInterval = time.Millisecond
	return s
}

// peer returns a Store for the same key on another client, as another
// replica would have.
func peer(t testing.TB, s *Store) *Store {
	t.Helper()
	p := New(newClient(t, s.rdb.(*redis.Client).Options().Addr), s.key)
	p.LeaseTTL, p.PollInterval, p.Codec = s.LeaseTTL, s.PollInterval, s.Codec
	return p
}
