package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ginsse/ginsse"
)

// publishBench compares Sender.Publish, from many goroutines at once, with
// redis-benchmark publishing to the same Redis, in one run.
func publishBench(w io.Writer, redisAddr string, n, goroutines int) error {
	if err := loopback(redisAddr); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(redisAddr)
	out, err := exec.Command("redis-benchmark", "-h", host, "-p", port, "-n", strconv.Itoa(n),
		"-c", strconv.Itoa(goroutines), "-q", "PUBLISH", "ginsse-bench", strings.Repeat("x", 100)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("redis-benchmark: %w: %s", err, out)
	}
	m := regexp.MustCompile(`([0-9.]+) requests per second`).FindSubmatch(out)
	if m == nil {
		return fmt.Errorf("redis-benchmark printed %q", out)
	}
	baseline, _ := strconv.ParseFloat(string(m[1]), 64)
	fmt.Fprintf(w, "redis-benchmark PUBLISH, %d clients: %.0f/s\n", goroutines, baseline)
	for _, history := range []int{0, 1000} {
		rate, err := senderRate(redisAddr, n, goroutines, history)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "ginsse Publish, %d goroutines, History %d: %.0f/s (%.2fx redis-benchmark)\n", goroutines, history, rate, rate/baseline)
	}
	return nil
}

func senderRate(redisAddr string, n, goroutines, history int) (float64, error) {
	s, err := ginsse.New(ginsse.Options{Addr: redisAddr, History: history, Heartbeat: -1})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data := strings.Repeat("x", 100)
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	start := time.Now()
	for g := range goroutines {
		wg.Go(func() {
			for i := g; i < n; i += goroutines {
				if err := s.Publish(ctx, "", data, ginsse.Channel("ginsse-bench")); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
