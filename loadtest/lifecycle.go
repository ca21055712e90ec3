package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ginsse/ginsse/sseclient"
)

// -lifecycle measures what ending streams from the server costs the
// streams that stay. One ginsse server holds -streams streams, stream i
// on channel i mod -channels as user "u<i>", while every channel gets
// -rate events a second. Four phases of -phase each follow:
//
//   - quiet: nothing but events;
//   - user: every second, a Disconnect of one user (streams 0..9 in turn);
//   - channel: a Disconnect of the last channel, a tenth of the streams
//     at the default ten channels;
//   - expiry: the streams of the second-to-last channel reach the
//     ExpiresAt they opened with, all in the same millisecond.
//
// Ended streams come back as browsers do, after the retry hint, with
// their Last-Event-ID (and no ExpiresAt). The bystanders — the streams of
// the other channels, bar the disconnected users — record the latency of
// every event, by the phase it was sent in; the report gives each phase's
// quantiles and its p99 against the quiet phase's.

// lifecycleConfig is what the flags set for -lifecycle and -rotate.
type lifecycleConfig struct {
	redis    string
	streams  int
	channels int
	rate     float64
	history  int
	phase    time.Duration
	maxAge   time.Duration // -rotate
	settle   time.Duration // -lifecycle: the set-up's bound
}

var phaseNames = []string{"quiet", "user", "channel", "expiry"}

// lifecycle is the state one -lifecycle run shares with its clients.
type lifecycle struct {
	cfg    lifecycleConfig
	addr   string
	starts [5]atomic.Int64 // phase boundaries, unix ns; starts[4] ends the last
	hists  [4]*histogram
	// Per phase, the streams the server ended and the latest end, in ns
	// after the phase's action.
	ended     [4]atomic.Int64
	lastEnd   [4]atomic.Int64
	actionAt  [4]atomic.Int64
	connected atomic.Int64
	refused   atomic.Int64
}

func runLifecycle(cfg lifecycleConfig, jsonOut string) error {
	if err := loopback(cfg.redis); err != nil {
		return err
	}
	if cfg.channels < 4 || cfg.streams < 10*cfg.channels {
		return errors.New("-lifecycle needs at least 4 channels and 10 streams per channel")
	}
	srv, err := startServer(modeGinsse, cfg.redis, cfg.history)
	if err != nil {
		return err
	}
	defer srv.stop()
	lc := &lifecycle{cfg: cfg, addr: srv.addr}
	for i := range lc.hists {
		lc.hists[i] = newHistogram()
	}
	// The schedule is fixed before the streams connect, since the
	// expiring streams carry their ExpiresAt from their first request.
	t0 := time.Now().Add(cfg.settle)
	for i := range lc.starts {
		lc.starts[i].Store(t0.Add(time.Duration(i) * cfg.phase).UnixNano())
	}
	expiry := time.Unix(0, lc.starts[3].Load()).Add(time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i := range cfg.streams {
		c := &lcClient{lc: lc, i: i, ch: i % cfg.channels}
		if c.ch == cfg.channels-2 {
			c.expires = expiry.UnixMilli()
		}
		c.bystander = c.ch < cfg.channels-2 && i >= 10
		wg.Go(func() { c.run(ctx) })
	}
	pub := startLCPublisher(ctx, srv.addr, cfg)
	defer pub.wait()
	for lc.connected.Load() < int64(cfg.streams) {
		if time.Now().After(t0) {
			return fmt.Errorf("only %d of %d streams open after -settle %v", lc.connected.Load(), cfg.streams, cfg.settle)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "lifecycle: %d streams open; phases start in %v\n", cfg.streams, time.Until(t0).Round(time.Millisecond))
	lc.act(srv.addr)
	st := readServerStats(srv.addr) // before the streams go
	cancel()
	pub.wait()
	return lc.report(st, jsonOut)
}

// act runs the phases' actions on schedule.
func (lc *lifecycle) act(addr string) {
	at := func(i int, d time.Duration) { time.Sleep(time.Until(time.Unix(0, lc.starts[i].Load()).Add(d))) }
	hc := &http.Client{Timeout: 10 * time.Second}
	disconnect := func(q url.Values) {
		resp, err := hc.Post("http://"+addr+"/disconnect?"+q.Encode(), "", nil)
		if err == nil {
			resp.Body.Close()
		}
	}
	at(1, time.Second)
	for k := 0; k < 10 && time.Now().UnixNano() < lc.starts[2].Load()-int64(time.Second); k++ {
		lc.actionAt[1].Store(time.Now().UnixNano()) // the last end counts from the latest Disconnect
		disconnect(url.Values{"user": {"u" + strconv.Itoa(k)}})
		time.Sleep(time.Second)
	}
	at(2, time.Second)
	lc.actionAt[2].Store(time.Now().UnixNano())
	disconnect(url.Values{"channel": {lcChannel(lc.cfg.channels - 1)}})
	lc.actionAt[3].Store(lc.starts[3].Load() + int64(time.Second)) // the ExpiresAt
	at(4, 0)
	time.Sleep(time.Second) // the last phase's events arrive
}

func lcChannel(i int) string { return "lc" + strconv.Itoa(i) }

// phaseOf is the phase an event sent at ns belongs to, or -1.
func (lc *lifecycle) phaseOf(ns int64) int {
	for p := 3; p >= 0; p-- {
		if ns >= lc.starts[p].Load() {
			if ns >= lc.starts[4].Load() {
				return -1
			}
			return p
		}
	}
	return -1
}

// lcClient is one stream that behaves as a browser's EventSource.
type lcClient struct {
	lc        *lifecycle
	i, ch     int
	expires   int64 // unix ms; 0: none
	bystander bool
}

func (c *lcClient) run(ctx context.Context) {
	r := sseclient.NewReader(strings.NewReader(""))
	dial := func() (net.Conn, *bufio.Reader, error) {
		q := url.Values{"channel": {lcChannel(c.ch)}, "user": {"u" + strconv.Itoa(c.i)}}
		if c.expires != 0 {
			q.Set("expires", strconv.FormatInt(c.expires, 10))
		}
		conn, body, err := dialSSE(ctx, c.lc.addr, c.i, q, r.LastEventID())
		if errors.Is(err, errNot200) {
			c.lc.refused.Add(1)
		}
		return conn, body, err
	}
	follow := func(body *bufio.Reader) time.Duration {
		r.Reset(body)
		c.read(r)
		c.ended()
		retry, ok := r.Retry()
		if !ok {
			retry = time.Second
		}
		return retry
	}
	browse(ctx, dial, func() { c.lc.connected.Add(1) }, follow)
}

// ended counts a stream the server ended during a phase.
func (c *lcClient) ended() {
	now := time.Now().UnixNano()
	if p := c.lc.phaseOf(now); p > 0 {
		c.lc.ended[p].Add(1)
		if d := now - c.lc.actionAt[p].Load(); d > c.lc.lastEnd[p].Load() {
			c.lc.lastEnd[p].Store(d) // a close enough maximum for a report
		}
	}
	c.expires = 0 // it comes back with an identity that does not expire
}

// browse acts as a browser's EventSource on one stream until ctx ends:
// it dials, calls opened after its first 200, follows the stream to its
// end, and waits the reconnection time follow returns before it dials
// again; a failed dial is retried after 200 ms.
func browse(ctx context.Context, dial func() (net.Conn, *bufio.Reader, error), opened func(), follow func(*bufio.Reader) time.Duration) {
	first := true
	for ctx.Err() == nil {
		conn, body, err := dial()
		if err != nil {
			if !sleep(ctx, 200*time.Millisecond) {
				return
			}
			continue
		}
		if first {
			first = false
			opened()
		}
		stop := context.AfterFunc(ctx, func() { conn.Close() })
		wait := follow(body)
		stop()
		conn.Close()
		if ctx.Err() != nil || !sleep(ctx, wait) {
			return
		}
	}
}

// errNot200 is a stream request answered with another status.
var errNot200 = errors.New("answer not 200")

// dialSSE opens the stream GET /stream?query on addr, from a loopback
// source address chosen by i, over HTTP/1.0 so that the body comes
// unchunked, and returns it after its headers once it answered 200.
func dialSSE(ctx context.Context, addr string, i int, query url.Values, lastID string) (net.Conn, *bufio.Reader, error) {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}
	d := net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	req := "GET /stream?" + query.Encode() + " HTTP/1.0\r\nHost: " + addr + "\r\n"
	if lastID != "" {
		req += "Last-Event-ID: " + lastID + "\r\n"
	}
	if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
		conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(conn, 1024)
	status, err := br.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	if !strings.Contains(status, " 200 ") {
		conn.Close()
		return nil, nil, fmt.Errorf("%w: %q", errNot200, strings.TrimSpace(status))
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		if line == "\r\n" {
			return conn, br, nil
		}
	}
}

// read takes the stream's events until it ends; a bystander records the
// latency of each, by the phase it was sent in.
func (c *lcClient) read(r *sseclient.Reader) {
	for {
		e, err := r.NextRaw()
		if errors.Is(err, sseclient.ErrEventTooLarge) || errors.Is(err, sseclient.ErrLineTooLong) {
			continue
		}
		if err != nil {
			return
		}
		if !c.bystander {
			continue
		}
		now := time.Now().UnixNano()
		if _, ns := sample(e.Data); ns != 0 {
			if p := c.lc.phaseOf(ns); p >= 0 {
				c.lc.hists[p].record(now, now-ns)
			}
		}
	}
}

// lcPublisher sends "<seq> <unix ns>" to every channel, -rate a second.
type lcPublisher struct{ done chan struct{} }

func startLCPublisher(ctx context.Context, addr string, cfg lifecycleConfig) *lcPublisher {
	p := &lcPublisher{done: make(chan struct{})}
	if cfg.rate <= 0 {
		close(p.done) // no events
		return p
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: cfg.channels}}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.rate))
		defer tick.Stop()
		var wg sync.WaitGroup
		defer wg.Wait()
		for seq := 0; ; seq++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for ch := range cfg.channels {
				wg.Go(func() {
					data := strconv.Itoa(seq) + " " + strconv.FormatInt(time.Now().UnixNano(), 10)
					q := url.Values{"channel": {lcChannel(ch)}, "data": {data}}
					if resp, err := hc.Post("http://"+addr+"/send?"+q.Encode(), "", nil); err == nil {
						resp.Body.Close()
					}
				})
			}
		}
	}()
	return p
}

func (p *lcPublisher) wait() { <-p.done }

// lifecyclePhase is one phase's figures in the report.
type lifecyclePhase struct {
	Phase           string
	Events          int64   // bystander deliveries of events sent in the phase
	P50, P99, Max   float64 // ms
	P99VsQuiet      float64 // the phase's p99 over the quiet phase's
	Ended           int64   // streams the server ended in the phase
	LastEndedAfterS float64 // the last of them, seconds after the action
}

func (lc *lifecycle) report(st *serverStats, jsonOut string) error {
	var out []lifecyclePhase
	quiet := lc.hists[0].quantile(0.99)
	fmt.Printf("%d streams on %d channels, %.0f events/s on each, history %d, phases of %v\n",
		lc.cfg.streams, lc.cfg.channels, lc.cfg.rate, lc.cfg.history, lc.cfg.phase)
	fmt.Printf("%-8s %10s %9s %9s %9s %8s %7s %10s\n", "phase", "events", "p50 ms", "p99 ms", "max ms", "p99/q", "ended", "last end")
	for p, name := range phaseNames {
		h := lc.hists[p]
		ph := lifecyclePhase{Phase: name, Events: h.count.Load(), P50: h.quantile(0.5), P99: h.quantile(0.99), Max: h.max(),
			Ended: lc.ended[p].Load(), LastEndedAfterS: float64(lc.lastEnd[p].Load()) / 1e9}
		if quiet > 0 {
			ph.P99VsQuiet = ph.P99 / quiet
		}
		out = append(out, ph)
		fmt.Printf("%-8s %10d %9.1f %9.1f %9.1f %8.2f %7d %9.2fs\n", name, ph.Events, ph.P50, ph.P99, ph.Max, ph.P99VsQuiet, ph.Ended, ph.LastEndedAfterS)
	}
	if st != nil {
		fmt.Printf("server at the end: %d streams open; revoked %d, expired %d; %d answers not 200\n", st.Streams, st.Revoked, st.Expired, lc.refused.Load())
	}
	if jsonOut == "" {
		return nil
	}
	b, err := json.MarshalIndent(map[string]any{"config": lc.cfg.summary(), "phases": out}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(jsonOut, b, 0o644)
}

func (cfg lifecycleConfig) summary() map[string]any {
	return map[string]any{"streams": cfg.streams, "channels": cfg.channels, "rate": cfg.rate, "history": cfg.history,
		"phase": cfg.phase.String(), "max_stream_age": cfg.maxAge.String()}
}
