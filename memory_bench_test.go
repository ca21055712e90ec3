package ginsse

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/gin-gonic/gin"
)

// A test binary started with memoryServerArg runs BenchmarkStreamMemory's
// server instead of its tests: the kind memoryServerEnv names, on the
// Redis memoryRedisEnv names.
const (
	memoryServerArg = "-ginsse.memory-server"
	memoryServerEnv = "GINSSE_MEMORY_SERVER"
	memoryRedisEnv  = "GINSSE_MEMORY_REDIS"
)

// TestMain is the package's only one; a TestMain in package ginsse_test
// would clash with it.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == memoryServerArg {
		if err := serveMemory(os.Getenv(memoryServerEnv), os.Getenv(memoryRedisEnv)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// BenchmarkStreamMemory is what an open stream holds in a server over a
// real loopback connection: heap, goroutine stacks and RSS per stream,
// after two collections, for a bare gin handler that only holds its
// stream open ("gin"), and for ginsse streams on one shared channel and
// on a channel each. Each server runs in a process of its own; the
// clients and Redis run in the benchmark's.
//
//	go test -run '^$' -bench StreamMemory -benchtime 1x .
func BenchmarkStreamMemory(b *testing.B) {
	const n = 3000
	mr := miniredis.RunT(b)
	for _, bc := range []struct {
		kind string
		path func(i int) string
	}{
		{"gin", func(int) string { return "/bare" }},
		{"shared", func(int) string { return "/stream?channel=news" }},
		{"own", func(i int) string { return "/stream?channel=user-" + strconv.Itoa(i) }},
	} {
		b.Run(bc.kind, func(b *testing.B) {
			var held memory
			for b.Loop() {
				held = streamsHeld(b, bc.kind, mr.Addr(), bc.path, n)
			}
			b.ReportMetric(held.heap/n, "heap-B/stream")
			b.ReportMetric(held.stack/n, "stack-B/stream")
			b.ReportMetric(held.rss/n, "RSS-B/stream")
		})
	}
}

// memory is what a server process holds, in bytes.
type memory struct{ heap, stack, rss float64 }

// streamsHeld starts a server of kind, opens n streams on path(i), and
// returns what they added to the server's memory.
func streamsHeld(b *testing.B, kind, redisAddr string, path func(int) string, n int) memory {
	cmd := exec.Command(os.Args[0], memoryServerArg)
	cmd.Env = append(os.Environ(), memoryServerEnv+"="+kind, memoryRedisEnv+"="+redisAddr)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		in.Close() // the server exits when its input ends
		_ = cmd.Wait()
	}()
	out := bufio.NewReader(outPipe)
	addr, err := out.ReadString('\n')
	if err != nil {
		b.Fatalf("server %s: %v", kind, err)
	}
	measure := func() memory {
		if _, err := io.WriteString(in, "measure\n"); err != nil {
			b.Fatal(err)
		}
		line, err := out.ReadString('\n')
		if err != nil {
			b.Fatalf("server %s: %v", kind, err)
		}
		var m memory
		if _, err := fmt.Sscan(line, &m.heap, &m.stack, &m.rss); err != nil {
			b.Fatalf("server %s answered %q: %v", kind, line, err)
		}
		return m
	}
	before := measure()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		conns = append(conns, openStream(b, strings.TrimSpace(addr), path(i)))
	}
	after := measure()
	return memory{after.heap - before.heap, after.stack - before.stack, after.rss - before.rss}
}

// openStream opens a stream and returns once it answered 200: ginsse
// answers once the stream's channels are subscribed.
func openStream(b *testing.B, addr, path string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
		b.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.Contains(line, " 200 ") {
		b.Fatalf("%s: %q %v", path, line, err)
	}
	return c
}

// serveMemory is BenchmarkStreamMemory's server: it prints its address,
// then answers each line "measure" on its input with its heap, stacks and
// RSS in bytes, until its input ends.
func serveMemory(kind, redisAddr string) error {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	var s *Sender
	switch kind {
	case "gin", "shared", "own":
	default:
		return fmt.Errorf("%s=%q: want gin, shared or own", memoryServerEnv, kind)
	}
	if kind == "gin" {
		r.GET("/bare", func(c *gin.Context) {
			startStream(c)
			_, _ = c.Writer.Write(helloFrame)
			c.Writer.Flush()
			<-c.Request.Context().Done()
		})
	} else {
		var err error
		if s, err = New(Options{Addr: redisAddr, History: 1000}); err != nil {
			return err
		}
		defer s.Close()
		s.Mount(r.Group("/stream"))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(l, r) }() // ends with the process
	fmt.Println(l.Addr())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if s != nil && !windowsLive(s, 30*time.Second) {
			return fmt.Errorf("channels not live after 30 s")
		}
		runtime.GC()
		runtime.GC() // what sync.Pools held goes at the second
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		fmt.Println(m.HeapAlloc, m.StackInuse, rss())
	}
	return in.Err()
}

// windowsLive waits until every channel of s has its history window live.
func windowsLive(s *Sender, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); ; {
		live := true
		s.hub.mu.Lock()
		for _, t := range s.hub.topics {
			t.win.mu.Lock()
			live = live && t.win.state == winLive
			t.win.mu.Unlock()
		}
		s.hub.mu.Unlock()
		if live {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond) // a benchmark's wait: no signal tells a window went live
	}
}

// rss is the process's resident memory in bytes, read from Linux's
// /proc; 0 elsewhere.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
