// Command loadtest measures ginsse against the two alternatives a user
// weighs it against, under the same load generator in one run: the obvious
// handler with one Redis subscription per stream, and an in-memory server
// with no Redis (the ceiling).
//
//	go run ./loadtest -streams 5000 -events 200 -rate 50
//
// It starts each server as a child process on a loopback port, opens the
// streams from several loopback source addresses, publishes paced events
// through POST /send, and reports delivery, loss, order, latency, memory
// per stream and the Redis connections the server holds. It talks to
// 127.0.0.0/8 only, and bounds every phase in time.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

func main() {
	var (
		serveMode = flag.String("serve", "", "run as the server of this kind (used by the generator)")
		listen    = flag.String("listen", "127.0.0.1:0", "server address (with -serve)")
		redisAddr = flag.String("redis", "127.0.0.1:6379", "Redis on loopback")
		servers   = flag.String("servers", strings.Join(modes, ","), "servers to measure, in order")
		streams   = flag.Int("streams", 1000, "open streams")
		events    = flag.Int("events", 100, "events to publish")
		rate      = flag.Float64("rate", 50, "events per second")
		runs      = flag.Int("runs", 1, "runs of each server; the report gives medians")
		stall     = flag.Int("stall", 0, "streams that stop reading after connecting")
		size      = flag.Int("size", 0, "bytes of padding in each event")
		jsonOut   = flag.String("json", "", "also write the results as JSON to this file")
		chart     = flag.String("chart", "", "turn a JSON results file into an SVG chart on standard output")
		publishN  = flag.Int("publish", 0, "instead of streaming, time this many publishes against redis-benchmark")
		clients   = flag.Int("clients", 50, "concurrent publishers with -publish")
		history   = flag.Int("history", -1, "the ginsse server's History: default 1000 with -storm and -cold, 0 (off) otherwise")
		storm     = flag.Bool("storm", false, "reconnect storm: kill the server holding the streams, restart it, and watch them resume")
		cold      = flag.Bool("cold", false, "cold start: every stream connects at once to a running server while events flow")
		channels  = flag.Int("channels", 1, "with -storm and -cold: channels the streams are spread over; every event goes to every channel")
		down      = flag.Duration("down", 2*time.Second, "with -storm: how long the server stays down before its restart")
		jitter    = flag.Duration("jitter", 3*time.Second, "with -storm: each client waits a random 0..jitter after its stream ends before reconnecting")
		limit     = flag.Duration("limit", 90*time.Second, "with -storm and -cold: give up on the streams not caught up this long after the restart (or the cold start)")
		seed      = flag.Uint64("seed", 1, "with -storm and -cold: seed of the clients' random delays")
		port      = flag.Int("port", 0, "with -storm and -cold: fixed port of the server under test (0: a free one below the ephemeral range)")
		parallel  = flag.Int("parallel", 1000, "with -storm and -cold: stream connections being opened at once, at most")
	)
	flag.Parse()
	raiseFileLimit()
	if *history < 0 {
		*history = 0
		if *storm || *cold {
			*history = 1000
		}
	}
	var err error
	switch {
	case *serveMode != "":
		err = serve(*serveMode, *listen, *redisAddr, *history)
	case *storm && *cold:
		err = errors.New("-storm and -cold are two modes: choose one")
	case *storm || *cold:
		cfg := stormConfig{cold: *cold, redis: *redisAddr, streams: *streams, channels: *channels, rate: *rate,
			history: *history, size: *size, down: *down, jitter: *jitter, limit: *limit, seed: *seed,
			port: *port, parallel: *parallel}
		err = runStorms(cfg, *runs, *jsonOut)
	case *chart != "":
		err = writeChart(*chart, os.Stdout)
	case *publishN > 0:
		err = publishBench(os.Stdout, *redisAddr, *publishN, *clients)
	default:
		cfg := config{redis: *redisAddr, streams: *streams, events: *events, rate: *rate, stall: *stall, size: *size, history: *history}
		err = runAll(cfg, strings.Split(*servers, ","), *runs, *jsonOut)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// raiseFileLimit lifts the soft open-file limit to the hard one: every
// stream is a file descriptor on each side.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// loopback refuses any address outside 127.0.0.0/8.
func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if host == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s is not a loopback address: the load test targets this machine only", addr)
	}
	return nil
}

func runAll(cfg config, servers []string, runs int, jsonOut string) error {
	if err := loopback(cfg.redis); err != nil {
		return err
	}
	var all []result
	for run := 0; run < runs; run++ {
		for _, mode := range servers {
			res, err := measure(mode, cfg)
			res.Run = run + 1
			if err != nil {
				// A server that cannot hold the load is a result too.
				res.Error = err.Error()
				fmt.Fprintf(os.Stderr, "%-9s run %d: failed: %v\n", mode, res.Run, err)
				all = append(all, res)
				continue
			}
			fmt.Fprintln(os.Stderr, res.line())
			all = append(all, res)
		}
	}
	printTable(os.Stdout, all, servers)
	if jsonOut != "" {
		b, _ := json.MarshalIndent(all, "", "  ")
		return os.WriteFile(jsonOut, b, 0o644)
	}
	return nil
}
