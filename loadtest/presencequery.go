package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// -presence-query measures Sender.Presence on one channel with many users:
// -streams streams, each its own user, on channel lc0 of a server with
// presence on, which gets -rate events a second; once every stream is in
// the presence, GET /presence?channel=lc0 is timed every 100 ms for
// -phase, while the events flow.

type presenceQueryResult struct {
	Streams    int     `json:"streams"`
	Rate       float64 `json:"rate"`
	Queries    int     `json:"queries"`
	Users      int     `json:"users_answered_min"`
	P50        float64 `json:"p50_ms"`
	P99        float64 `json:"p99_ms"`
	Max        float64 `json:"max_ms"`
	AnswerKB   float64 `json:"answer_kb"`
	PresenceIn float64 `json:"presence_complete_s"` // from the last stream's 200 to a complete answer
}

func runPresenceQuery(cfg lifecycleConfig, jsonOut string) error {
	if err := loopback(cfg.redis); err != nil {
		return err
	}
	srv, err := startServer(modeGinsse, cfg.redis, 0, "-presence")
	if err != nil {
		return err
	}
	defer srv.stop()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var opened atomic.Int64
	for i := range cfg.streams {
		q := url.Values{"channel": {lcChannel(0)}, "user": {"u" + strconv.Itoa(i)}}
		dial := func() (net.Conn, *bufio.Reader, error) { return dialSSE(ctx, srv.addr, i, q, "") }
		follow := func(body *bufio.Reader) time.Duration {
			_, _ = io.Copy(io.Discard, body)
			return time.Second
		}
		wg.Go(func() { browse(ctx, dial, func() { opened.Add(1) }, follow) })
	}
	pub := startLCPublisher(ctx, srv.addr, lifecycleConfig{channels: 1, rate: cfg.rate})
	defer pub.wait() // after the cancel below, which ends it
	defer cancel()
	for opened.Load() < int64(cfg.streams) {
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
	res := presenceQueryResult{Streams: cfg.streams, Rate: cfg.rate, Users: cfg.streams}
	allIn := time.Now()
	hc := &http.Client{Timeout: 10 * time.Second}
	for {
		n, _, _, err := queryPresence(hc, srv.addr)
		if err == nil && n == cfg.streams {
			break
		}
		if time.Since(allIn) > time.Minute {
			return fmt.Errorf("presence never showed all %d users (last: %d, %v)", cfg.streams, n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res.PresenceIn = time.Since(allIn).Seconds()
	var took []float64
	for end := time.Now().Add(cfg.phase); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		n, size, d, err := queryPresence(hc, srv.addr)
		if err != nil {
			return err
		}
		took = append(took, float64(d)/float64(time.Millisecond))
		res.Users, res.AnswerKB = min(res.Users, n), float64(size)/1e3
	}
	slices.Sort(took)
	res.Queries, res.P50, res.P99, res.Max = len(took), took[len(took)/2], took[len(took)*99/100], took[len(took)-1]
	fmt.Printf("presence of one channel with %d users (%.0f events/s to it): complete %.1f s after the last stream opened; %d queries: p50 %.1f ms, p99 %.1f ms, max %.1f ms; answer %.0f KB, fewest users answered %d\n",
		res.Streams, res.Rate, res.PresenceIn, res.Queries, res.P50, res.P99, res.Max, res.AnswerKB, res.Users)
	if jsonOut == "" {
		return nil
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(jsonOut, b, 0o644)
}

// queryPresence times one GET /presence?channel=lc0 and returns the users
// it names and its size.
func queryPresence(hc *http.Client, addr string) (users, size int, took time.Duration, err error) {
	start := time.Now()
	resp, err := hc.Get("http://" + addr + "/presence?channel=" + lcChannel(0))
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	took = time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, 0, took, fmt.Errorf("presence: %d %v", resp.StatusCode, err)
	}
	var p struct{ Users []string }
	if err := json.Unmarshal(body, &p); err != nil {
		return 0, 0, took, err
	}
	return len(p.Users), len(body), took, nil
}
