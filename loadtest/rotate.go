package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// -rotate measures how Options.MaxStreamAge spreads streams over the
// replicas after a scale-out. Replica A, with -max-stream-age, takes all
// -streams streams; replica B starts 5 s later. Every reconnect goes to
// the next replica in turn, as nginx's default round robin sends it (and
// to the other one when the first refuses, as nginx tries the next
// upstream). The run samples each replica's open streams for twice the
// age and reports B's share over time.

type rotateSample struct {
	AfterS float64 // seconds since B started
	A, B   int
}

func runRotate(cfg lifecycleConfig, jsonOut string) error {
	if err := loopback(cfg.redis); err != nil {
		return err
	}
	if cfg.maxAge <= 0 {
		return fmt.Errorf("-rotate needs -max-stream-age")
	}
	age := []string{"-max-stream-age", cfg.maxAge.String()}
	a, err := startServer(modeGinsse, cfg.redis, cfg.history, age...)
	if err != nil {
		return err
	}
	defer a.stop()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	bAddr := l.Addr().String()
	l.Close()
	addrs := []string{a.addr, bAddr}
	var turn atomic.Int64
	var opened atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i := range cfg.streams {
		q := url.Values{"channel": {"rotate"}, "user": {"u" + strconv.Itoa(i)}}
		k := 0 // the first connect goes to A
		dial := func() (net.Conn, *bufio.Reader, error) {
			conn, body, err := dialSSE(ctx, addrs[k], i, q, "")
			if err != nil {
				conn, body, err = dialSSE(ctx, addrs[1-k], i, q, "")
			}
			k = int(turn.Add(1)) % 2
			return conn, body, err
		}
		follow := func(body *bufio.Reader) time.Duration {
			_, _ = io.Copy(io.Discard, body)
			// A browser waits out the retry hint, 1–5 s by default.
			return time.Second + time.Duration(i%4000)*time.Millisecond
		}
		wg.Go(func() { browse(ctx, dial, func() { opened.Add(1) }, follow) })
	}
	for opened.Load() < int64(cfg.streams) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(5 * time.Second)
	b, err := startServerAt(modeGinsse, bAddr, cfg.redis, cfg.history, age...)
	if err != nil {
		return err
	}
	defer b.stop()
	bStart := time.Now()
	fmt.Printf("%d streams on A; B started; max stream age %v\n", cfg.streams, cfg.maxAge)
	fmt.Printf("%8s %7s %7s %8s\n", "after", "A", "B", "B share")
	var samples []rotateSample
	step := cfg.maxAge / 8
	for t := time.Duration(0); t <= 2*cfg.maxAge; t += step {
		time.Sleep(time.Until(bStart.Add(t)))
		var sa, sb int
		if st := readServerStats(a.addr); st != nil {
			sa = st.Streams
		}
		if st := readServerStats(bAddr); st != nil {
			sb = st.Streams
		}
		s := rotateSample{AfterS: time.Since(bStart).Seconds(), A: sa, B: sb}
		samples = append(samples, s)
		share := 0.0
		if sa+sb > 0 {
			share = float64(sb) / float64(sa+sb)
		}
		fmt.Printf("%7.0fs %7d %7d %7.0f%%\n", s.AfterS, sa, sb, 100*share)
	}
	if jsonOut == "" {
		return nil
	}
	out, err := json.MarshalIndent(map[string]any{"config": cfg.summary(), "samples": samples}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(jsonOut, out, 0o644)
}
