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
//
// # Reconnect storms
//
// -storm measures what a crash costs when history is on:
//
//	go run ./loadtest -storm -streams 15000 -rate 5 -history 1000 -down 2s -jitter 3s -runs 3
//
// One ginsse server with -history (default 1000) holds the streams on a
// fixed loopback port (-port; by default a free one below the ephemeral
// range); a second one on the same Redis takes the sends. The streams are
// spread evenly over -channels channels (stream i reads channel i mod C),
// and every event, "<seq> <unix ns> <padding>", goes to every channel,
// -rate a second: each stream gets the same rate whatever the number of
// channels, and the sends number rate × channels a second. Once every
// stream has answered 200 and received an event (the set-up, where a
// failure is retried and counted apart) and events have flowed for 2 s,
// the server is killed with SIGKILL and restarted on the same port after
// -down. Each client then acts as a browser's EventSource: when its stream
// ends it waits a random 0..-jitter (from a generator seeded by -seed, the
// run and the stream, so a seed repeats its delays), reconnects with the
// last id it saw as Last-Event-ID, retries every 100-250 ms while it gets
// no answer (refused, reset, timed out), and stops for good at any answer
// other than 200. At most -parallel connections are being opened at once;
// the answers are awaited without a bound. Events flow until 3 s after
// every stream caught up, or until -limit after the restart.
//
// -cold measures the other burst: events flow into the history for 2 s,
// then every stream connects at once to the running server.
//
//	go run ./loadtest -cold -streams 15000 -rate 50
//
// Each run prints a line; the medians of the runs follow in a table, and
// -json keeps every run. The figures:
//
//   - lost: events sent to a stream's channel after its first 200 answer,
//     until the sends stopped, that it never received; a stream stopped by
//     a non-200 answer loses all that follow. Sends that the publishing
//     server failed are not expected (publish errors). Given as a total,
//     the most on one stream, the streams that lost any, and the part on
//     streams still behind at the end. dup: events received twice.
//   - non-200: streams stopped by such an answer, at most one each, by
//     status. breaks: streams that ended after a 200, from the kill on (the
//     kill ends every stream once); gaps: ginsse-gap events received;
//     retries: requests that got no answer.
//   - reconnected: a stream's first 200 after the restart. caught up: the
//     first moment a stream holds every event of its channel from its
//     first 200 up to the first event sent after the restart. Both are
//     seconds from the restart (the start of the new server process), as
//     p50, p99 and max over the streams that got there; ready is when the
//     new process first answered.
//   - history reads: the growth of Redis INFO commandstats for the stream
//     commands that read (xrange, xrevrange, xread and any other x* read),
//     and bytes out, of total_net_output_bytes, live events included; both
//     from the kill until every stream caught up, or -limit. redis conns:
//     the most the server held then. RSS: its memory before the kill and
//     at most after. server: what the new server counted (events replayed,
//     warnings by reason).
//   - cold: answered, the 200 answers, and first event, each stream's first
//     event, in seconds from the moment the streams start connecting;
//     non-200, history reads and the rest as above, from that moment.
//
// Use a Redis of its own: INFO counts every client's commands.
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
		redisAddr = flag.String("redis", "127.0.0.1:6379", "Redis on loopback (with -serve, a comma-separated list is a Redis Cluster's nodes)")
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
		chaosRun  = flag.Bool("chaos", false, "chaos soak: two servers on a Redis of the tool's own, readers of every speed, faults on a schedule; checks every stream against what Redis holds")
		duration  = flag.Duration("duration", 10*time.Minute, "with -chaos: how long events are sent under faults")
		every     = flag.Duration("every", 10*time.Second, "with -chaos: time from one fault to the next")
		users     = flag.Int("users", 50, "with -chaos: per-user channels, one stream each, besides -channels shared by -streams")
		onCluster = flag.Bool("cluster", false, "with -chaos: a 3+3 Redis Cluster of the tool's own, whose Redis fault is a master's SIGKILL and the failover")
		strict    = flag.Bool("strict", false, "with -chaos: fail when a stream lost, repeated or got a gap for an event Redis held")
		lifecycle = flag.Bool("lifecycle", false, "what Disconnect of a user, of a channel, and a mass expiry cost the other streams' latency")
		rotate    = flag.Bool("rotate", false, "how -max-stream-age spreads streams over a replica started later")
		phase     = flag.Duration("phase", 10*time.Second, "with -lifecycle: length of each phase; with -presence-query: how long queries run")
		settle    = flag.Duration("settle", 60*time.Second, "with -lifecycle: time the streams have to connect before the phases start")
		maxAge    = flag.Duration("max-stream-age", 0, "the ginsse server's MaxStreamAge (with -serve and -rotate)")
		presence  = flag.Bool("presence", false, "the ginsse servers keep presence (with -serve, -storm and -cold)")
		presenceQ = flag.Bool("presence-query", false, "time Presence on one channel with -streams users while -rate events a second flow to it, for -phase")
	)
	flag.Parse()
	raiseFileLimit()
	if *history < 0 {
		*history = 0
		if *storm || *cold || *lifecycle || *rotate {
			*history = 1000
		}
		if *chaosRun {
			*history = 100000
		}
	}
	if *lifecycle && *channels == 1 {
		*channels = 10 // the default with -lifecycle: a tenth of the streams per channel
	}
	var err error
	switch {
	case *serveMode != "":
		err = serve(*serveMode, *listen, *redisAddr, *history, *maxAge, *presence)
	case *storm && *cold:
		err = errors.New("-storm and -cold are two modes: choose one")
	case *presenceQ:
		cfg := lifecycleConfig{redis: *redisAddr, streams: *streams, rate: *rate, phase: *phase}
		err = runPresenceQuery(cfg, *jsonOut)
	case *lifecycle || *rotate:
		cfg := lifecycleConfig{redis: *redisAddr, streams: *streams, channels: *channels, rate: *rate, history: *history,
			phase: *phase, maxAge: *maxAge, settle: *settle}
		if *rotate {
			err = runRotate(cfg, *jsonOut)
		} else {
			err = runLifecycle(cfg, *jsonOut)
		}
	case *chaosRun:
		cfg := chaosConfig{duration: *duration, every: *every, shared: *channels, streams: *streams, users: *users,
			rate: *rate, history: *history, seed: *seed, cluster: *onCluster}
		err = runChaos(cfg, *strict, *jsonOut)
	case *storm || *cold:
		cfg := stormConfig{cold: *cold, redis: *redisAddr, streams: *streams, channels: *channels, rate: *rate,
			history: *history, size: *size, down: *down, jitter: *jitter, limit: *limit, seed: *seed,
			port: *port, parallel: *parallel, presence: *presence}
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
