package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ginsse/ginsse/sseclient"
)

// config is one load: the same for every server measured.
type config struct {
	redis   string
	streams int
	events  int
	rate    float64
	stall   int
	size    int // bytes of padding in each event's data
	history int // the ginsse server's Options.History
}

// Bounds of each phase.
const (
	startTimeout   = 20 * time.Second
	connectTimeout = 120 * time.Second
	drainTimeout   = 30 * time.Second
	channel        = "bench"
)

// result is what one run of one server measured.
type result struct {
	Server           string  `json:"server"`
	Run              int     `json:"run"`
	Streams          int     `json:"streams"`
	Connected        int     `json:"connected"`
	ConnectSeconds   float64 `json:"connect_seconds"`
	EventsSent       int     `json:"events_sent"`
	SendRate         float64 `json:"send_rate"`
	Expected         int64   `json:"deliveries_expected"`
	Received         int64   `json:"deliveries_received"`
	Lost             int64   `json:"lost"`
	Duplicates       int64   `json:"duplicates"`
	OutOfOrder       int64   `json:"out_of_order"`
	P50ms            float64 `json:"p50_ms"`
	P90ms            float64 `json:"p90_ms"`
	P99ms            float64 `json:"p99_ms"`
	MaxMs            float64 `json:"max_ms"`
	DeliveriesPerSec float64 `json:"deliveries_per_second"`
	RSSPerStreamKB   float64 `json:"rss_per_stream_kb"`
	RedisConnections int     `json:"redis_connections"`
	ServerRSSMB      float64 `json:"server_rss_mb"`
	Error            string  `json:"error,omitempty"`
}

func (r result) line() string {
	return fmt.Sprintf("%-9s run %d: %d/%d streams, %.0f deliveries/s, p50 %.1f ms p99 %.1f ms, lost %d, dup %d, %.1f KB/stream, %d redis conns",
		r.Server, r.Run, r.Connected, r.Streams, r.DeliveriesPerSec, r.P50ms, r.P99ms, r.Lost, r.Duplicates, r.RSSPerStreamKB, r.RedisConnections)
}

// measure starts one server, loads it, and stops it.
func measure(mode string, cfg config) (result, error) {
	res := result{Server: mode, Streams: cfg.streams}
	srv, err := startServer(mode, cfg.redis, cfg.history)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	addr := srv.addr
	pid := srv.pid()
	base := rss(pid)

	h := newHistogram()
	clients := make([]*client, cfg.streams)
	start := time.Now()
	if err := connectAll(clients, addr, cfg, h); err != nil {
		return res, err
	}
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.conn.Close()
			}
		}
	}()
	res.ConnectSeconds = time.Since(start).Seconds()
	for _, c := range clients {
		if c != nil {
			res.Connected++
		}
	}
	time.Sleep(500 * time.Millisecond) // let the server settle before reading its memory
	res.ServerRSSMB = float64(rss(pid)) / (1 << 20)
	res.RSSPerStreamKB = float64(rss(pid)-base) / 1024 / float64(max(res.Connected, 1))
	res.RedisConnections = redisConnections(pid, cfg.redis)

	sent, sendSecs, err := publish(addr, cfg)
	if err != nil {
		return res, err
	}
	res.EventsSent = sent
	res.SendRate = float64(sent) / sendSecs
	readers := res.Connected - cfg.stall
	res.Expected = int64(readers) * int64(sent)
	deadline := time.Now().Add(drainTimeout)
	for time.Now().Before(deadline) && h.count.Load() < res.Expected {
		time.Sleep(20 * time.Millisecond)
	}
	res.Received = h.count.Load()
	// The connections held once publishing has used the pool too.
	res.RedisConnections = max(res.RedisConnections, redisConnections(pid, cfg.redis))
	res.Lost = res.Expected - res.Received
	for _, c := range clients {
		if c != nil {
			res.Duplicates += c.dups.Load()
			res.OutOfOrder += c.disorder.Load()
		}
	}
	res.Lost += res.Duplicates // a duplicate delivery was counted as received
	span := time.Duration(h.last.Load() - h.first.Load())
	if span > 0 {
		res.DeliveriesPerSec = float64(res.Received) / span.Seconds()
	}
	res.P50ms, res.P90ms, res.P99ms, res.MaxMs = h.quantile(0.50), h.quantile(0.90), h.quantile(0.99), h.max()
	return res, nil
}

// server is a server child process.
type server struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{} // closed once the process has exited
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop kills the process and waits until it is gone.
func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// startServer runs this binary as the server on a free loopback port and
// waits until it answers.
func startServer(mode, redisAddr string, history int, extra ...string) (*server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	return startServerAt(mode, addr, redisAddr, history, extra...)
}

// startServerAt runs this binary as the server on addr and waits until it
// answers, or fails as soon as the process exits (a port still taken).
func startServerAt(mode, addr, redisAddr string, history int, extra ...string) (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{"-serve", mode, "-listen", addr, "-redis", redisAddr, "-history", strconv.Itoa(history)}, extra...)
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, addr: addr, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		resp, err := hc.Get("http://" + addr + "/ready")
		if err == nil {
			resp.Body.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("server on %s exited: %v", addr, cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.stop()
	return nil, errors.New("server did not start")
}

// client is one open stream, read by its own goroutine.
type client struct {
	conn     net.Conn
	body     io.Reader // the stream after its headers
	last     atomic.Int64
	dups     atomic.Int64
	disorder atomic.Int64
	seen     []uint64
}

// connectAll opens the streams, spreading them over loopback source
// addresses so that more than one address's ports are available.
func connectAll(clients []*client, addr string, cfg config, h *histogram) error {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for i := range clients {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := dialStream(ctx, addr, i, cfg.events)
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			clients[i] = c
			if i < cfg.stall {
				// A stalled client never reads again, and keeps its
				// receive window small so the server feels it soon.
				if tc, ok := c.conn.(*net.TCPConn); ok {
					_ = tc.SetReadBuffer(4096)
				}
				return
			}
			go c.read(h)
		})
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		return *err
	}
	return nil
}

func dialStream(ctx context.Context, addr string, i, events int) (*client, error) {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}
	d := net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// HTTP/1.0, so the body comes unchunked.
	fmt.Fprintf(conn, "GET /stream?channel=%s HTTP/1.0\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", channel, addr)
	br := bufio.NewReaderSize(conn, 4096)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		conn.Close()
		return nil, fmt.Errorf("stream %d: %q %v", i, strings.TrimSpace(status), err)
	}
	for { // headers, then the first comment proves the stream is live
		line, err := br.ReadString('\n')
		if err != nil {
			conn.Close()
			return nil, err
		}
		if strings.HasPrefix(line, ":") {
			break
		}
	}
	c := &client{conn: conn, body: afterHeaders(br, conn), seen: make([]uint64, events/64+1)}
	c.last.Store(-1)
	return c, nil
}

// read takes the events "<seq> <unix ns> <padding>" until the stream
// ends, recording each one's latency.
func (c *client) read(h *histogram) {
	r := sseclient.NewReader(c.body)
	for {
		e, err := r.NextRaw()
		if errors.Is(err, sseclient.ErrEventTooLarge) || errors.Is(err, sseclient.ErrLineTooLong) {
			continue // not one of the publisher's; the Reader skips it
		}
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		seq, ts := sample(e.Data)
		if seq < 0 || ts == 0 || seq/64 >= len(c.seen) {
			continue
		}
		if c.seen[seq/64]&(1<<(seq%64)) != 0 {
			c.dups.Add(1)
			continue
		}
		c.seen[seq/64] |= 1 << (seq % 64)
		if int64(seq) < c.last.Load() {
			c.disorder.Add(1)
		}
		c.last.Store(int64(seq))
		h.record(now, now-ts)
	}
}

// publish offers the events at the configured pace through POST /send.
// The requests are pipelined on one HTTP/1.1 connection: each leaves at
// its time whether or not the server has answered the one before, so a
// slow server cannot slow the offered rate (the server still handles them
// one after another, in order). It returns the events sent and the
// seconds until the last answer.
func publish(addr string, cfg config) (int, float64, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close()
	// Every phase is bounded: the answers must all be in by then.
	bound := time.Duration(float64(cfg.events)/cfg.rate*float64(time.Second)) + drainTimeout
	_ = conn.SetDeadline(time.Now().Add(bound))
	answered := make(chan error, 1)
	go func() { answered <- readAnswers(bufio.NewReader(conn), cfg.events) }()

	interval := time.Duration(float64(time.Second) / cfg.rate)
	pad := strings.Repeat("x", cfg.size)
	start := time.Now()
	var req []byte
	for i := range cfg.events {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		q := url.Values{"channel": {channel}, "data": {fmt.Sprintf("%d %d %s", i, time.Now().UnixNano(), pad)}}
		req = fmt.Appendf(req[:0], "POST /send?%s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n", q.Encode(), addr)
		if _, err := conn.Write(req); err != nil {
			return i, time.Since(start).Seconds(), fmt.Errorf("send: %w", err)
		}
	}
	if err := <-answered; err != nil {
		return cfg.events, time.Since(start).Seconds(), err
	}
	return cfg.events, time.Since(start).Seconds(), nil
}

// readAnswers reads n answers to pipelined sends and fails on the first
// that is not 2xx.
func readAnswers(br *bufio.Reader, n int) error {
	for i := range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("send %d: %w", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("send %d: %s", i, resp.Status)
		}
	}
	return nil
}

// rss is the resident memory of a process, in bytes.
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// redisConnections counts the process's TCP connections to the Redis
// port, from its file descriptors and the kernel's socket table.
func redisConnections(pid int, redisAddr string) int {
	_, port, _ := net.SplitHostPort(redisAddr)
	p, _ := strconv.Atoi(port)
	want := fmt.Sprintf(":%04X", p)
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"tcp", "tcp6"} {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 9 && strings.HasSuffix(f[2], want) && inodes[f[9]] {
				n++
			}
		}
	}
	return n
}
