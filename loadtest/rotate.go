package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
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
		wg.Go(func() {
			first := true
			for ctx.Err() == nil {
				k := int(turn.Add(1)) % 2
				if first {
					k = 0
				}
				conn, body, err := holdStream(ctx, addrs[k], i)
				if err != nil {
					conn, body, err = holdStream(ctx, addrs[1-k], i)
				}
				if err != nil {
					if !sleep(ctx, 200*time.Millisecond) {
						return
					}
					continue
				}
				if first {
					first = false
					opened.Add(1)
				}
				stop := context.AfterFunc(ctx, func() { conn.Close() })
				_, _ = io.Copy(io.Discard, body)
				stop()
				conn.Close()
				// A browser waits out the retry hint, 1–5 s by default.
				if !sleep(ctx, time.Second+time.Duration(i%4000)*time.Millisecond) {
					return
				}
			}
		})
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

// holdStream opens one stream on addr and returns its body once it
// answered 200.
func holdStream(ctx context.Context, addr string, i int) (net.Conn, io.Reader, error) {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}
	d := net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	req := "GET /stream?channel=rotate&user=u" + strconv.Itoa(i) + " HTTP/1.0\r\nHost: " + addr + "\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(conn, 512)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		conn.Close()
		return nil, nil, fmt.Errorf("answer %q: %v", strings.TrimSpace(status), err)
	}
	return conn, br, nil
}
