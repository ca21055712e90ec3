package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

// stormResult is what one storm or cold run measured. Times of the
// streams (reconnect, caught up, answer, first event) are seconds from the
// restart of the killed server (storm) or from the cold start (cold):
// p50, p99 and max over the streams that got there.
type stormResult struct {
	Mode     string  `json:"mode"` // "storm" or "cold"
	Run      int     `json:"run"`
	Seed     uint64  `json:"seed"`
	Streams  int     `json:"streams"`
	Channels int     `json:"channels"`
	Rate     float64 `json:"rate"` // events per second offered to every channel
	History  int     `json:"history"`
	DownS    float64 `json:"down_s,omitempty"`
	JitterS  float64 `json:"jitter_s,omitempty"`

	SetupS      float64 `json:"setup_s,omitempty"`      // storm: until every stream first answered 200
	SetupNon200 int     `json:"setup_non200,omitempty"` // storm: non-200 answers in the set-up, retried
	// Storm: streams that ended, and requests that got no answer, in the
	// set-up. The other counts of breaks and retries start at the kill.
	SetupBreaks  int `json:"setup_breaks,omitempty"`
	SetupRetries int `json:"setup_retries,omitempty"`

	EventsPerChannel  int     `json:"events_per_channel"`
	Publishes         int64   `json:"publishes"`
	PublishErrors     int64   `json:"publish_errors"` // sends answered with an error or not at all: not expected
	PublishUnanswered int64   `json:"publish_unanswered"`
	SendRate          float64 `json:"send_rate"` // events per second per channel, as sent

	Connected   int            `json:"connected"` // streams that answered 200 at least once
	Expected    int64          `json:"deliveries_expected"`
	Received    int64          `json:"deliveries_received"`
	Lost        int64          `json:"lost"`
	LostMax     int            `json:"lost_max"`
	LostStreams int            `json:"lost_streams"` // streams that lost at least one event
	LostBehind  int64          `json:"lost_behind"`  // storm: of lost, on streams that had not caught up by the end
	Duplicates  int64          `json:"duplicates"`
	DupMax      int            `json:"duplicates_max"`
	Non200      int            `json:"non200"` // streams stopped by a non-200 answer (one each at most)
	Statuses    map[string]int `json:"non200_statuses"`
	Breaks      int64          `json:"breaks"` // streams that ended after a 200
	BreaksMax   int            `json:"breaks_max"`
	Gaps        int64          `json:"gaps"` // ginsse-gap events received
	GapsMax     int            `json:"gaps_max"`
	Retries     int64          `json:"retries"` // requests that got no answer (refused, reset, timed out)
	RetriesMax  int            `json:"retries_max"`

	ReadyS        float64 `json:"restart_ready_s,omitempty"` // storm: from the restart until the server answered
	Reconnected   int     `json:"reconnected,omitempty"`
	ReconnectP50S float64 `json:"reconnect_p50_s,omitempty"`
	ReconnectP99S float64 `json:"reconnect_p99_s,omitempty"`
	ReconnectMaxS float64 `json:"reconnect_max_s,omitempty"`
	CaughtUp      int     `json:"caught_up,omitempty"`
	// NextSentS is when the first event after the restart was sent: no
	// stream can catch up before it.
	NextSentS      float64 `json:"next_sent_s,omitempty"`
	CaughtUpP50S   float64 `json:"caught_up_p50_s,omitempty"`
	CaughtUpP99S   float64 `json:"caught_up_p99_s,omitempty"`
	CaughtUpMaxS   float64 `json:"caught_up_max_s,omitempty"`
	Answered       int     `json:"answered,omitempty"` // cold: streams that answered 200
	AnswerP50S     float64 `json:"answer_p50_s,omitempty"`
	AnswerP99S     float64 `json:"answer_p99_s,omitempty"`
	AnswerMaxS     float64 `json:"answer_max_s,omitempty"`
	FirstEvent     int     `json:"first_event,omitempty"` // cold: streams that received an event
	FirstEventP50S float64 `json:"first_event_p50_s,omitempty"`
	FirstEventP99S float64 `json:"first_event_p99_s,omitempty"`
	FirstEventMaxS float64 `json:"first_event_max_s,omitempty"`
	NotReached     string  `json:"not_reached,omitempty"` // what had not happened by -limit

	// The window: from the kill (storm) or the cold start until every
	// stream caught up (storm) or received an event (cold), or -limit.
	WindowS         float64          `json:"window_s"`
	HistoryReads    int64            `json:"history_reads"` // Redis x* read commands in the window
	HistoryReadUsec int64            `json:"history_read_usec"`
	ReadCommands    map[string]int64 `json:"read_commands"`
	RedisOutBytes   int64            `json:"redis_out_bytes"`    // total_net_output_bytes in the window, live events included
	RedisInBytes    int64            `json:"redis_in_bytes"`     // total_net_input_bytes in the window
	RedisCommands   int64            `json:"redis_commands"`     // every command Redis ran in the window, scripts' own included
	Subscribes      int64            `json:"subscribe_commands"` // SUBSCRIBE and SSUBSCRIBE commands in the window, whatever their channels
	// PresenceSeen is, with -presence, the users the publishing server saw
	// on the first channel at each sample, from the set-up on.
	PresenceSeen            []int   `json:"presence_seen,omitempty"`
	RedisOutBytesPerSBefore float64 `json:"redis_out_bytes_per_s_before"`
	RedisConnsBefore        int     `json:"redis_conns_before"`
	RedisConnsMax           int     `json:"redis_conns_max"` // the server under test's, in the window
	RSSBeforeMB             float64 `json:"rss_before_mb"`
	RSSAtKillMB             float64 `json:"rss_at_kill_mb,omitempty"`
	RSSMaxMB                float64 `json:"rss_max_mb"`
	RSSEndMB                float64 `json:"rss_end_mb"`
	ServerCPUS              float64 `json:"server_cpu_s"`
	GeneratorCores          float64 `json:"generator_cores"` // CPU the generator used, in cores, in the window
	// Server is what the server under test counted, at the end of the
	// window: since its restart (storm) or its start (cold).
	Server *serverStats `json:"server,omitempty"`
	// SetupServer is what the killed server counted, just before the kill.
	SetupServer *serverStats `json:"setup_server,omitempty"`

	Error string `json:"error,omitempty"`
}

func newStormResult(cfg stormConfig, run int) stormResult {
	res := stormResult{Mode: cfg.mode(), Run: run, Seed: cfg.seed, Streams: cfg.streams, Channels: cfg.channels,
		Rate: cfg.rate, History: cfg.history, Statuses: map[string]int{}, ReadCommands: map[string]int64{}}
	if !cfg.cold {
		res.DownS, res.JitterS = cfg.down.Seconds(), cfg.jitter.Seconds()
	}
	return res
}

// add sums up the clients once they have all ended. from is the restart
// or the cold start, in stormState time.
func (res *stormResult) add(clients []*stormClient, from int64, cold bool) {
	var reconnect, caught, answer, first []float64
	since := func(t int64) float64 { return time.Duration(t - from).Seconds() }
	for _, c := range clients {
		f := c.figures()
		if c.first >= 0 {
			res.Connected++
		}
		res.Expected += int64(f.expected)
		res.Received += int64(f.received)
		res.Lost += int64(f.lost)
		res.LostMax = max(res.LostMax, f.lost)
		if f.lost > 0 {
			res.LostStreams++
		}
		if !cold && c.caughtAt == 0 {
			res.LostBehind += int64(f.lost)
		}
		res.Duplicates += int64(c.dups)
		res.DupMax = max(res.DupMax, c.dups)
		if c.status != 0 {
			res.Non200++
		}
		res.Breaks += int64(c.breaks)
		res.BreaksMax = max(res.BreaksMax, c.breaks)
		res.Gaps += int64(c.gaps)
		res.GapsMax = max(res.GapsMax, c.gaps)
		res.Retries += int64(c.retries)
		res.RetriesMax = max(res.RetriesMax, c.retries)
		res.SetupNon200 += c.setupNon200
		res.SetupBreaks += c.setupBreaks
		res.SetupRetries += c.setupRetries
		if c.reconnectedAt != 0 {
			reconnect = append(reconnect, since(c.reconnectedAt))
		}
		if c.caughtAt != 0 {
			caught = append(caught, since(c.caughtAt))
		}
		if cold && c.connectedAt != 0 {
			answer = append(answer, since(c.connectedAt))
		}
		if cold && c.firstEventAt != 0 {
			first = append(first, since(c.firstEventAt))
		}
	}
	res.Reconnected = len(reconnect)
	res.ReconnectP50S, res.ReconnectP99S, res.ReconnectMaxS = quantiles(reconnect)
	res.CaughtUp = len(caught)
	if len(clients) > 0 && !cold && clients[0].st.restartSeq.Load() >= 0 {
		c := clients[0]
		res.NextSentS = since(c.st.sentAt[c.st.restartSeq.Load()].Load())
	}
	res.CaughtUpP50S, res.CaughtUpP99S, res.CaughtUpMaxS = quantiles(caught)
	res.Answered = len(answer)
	res.AnswerP50S, res.AnswerP99S, res.AnswerMaxS = quantiles(answer)
	res.FirstEvent = len(first)
	res.FirstEventP50S, res.FirstEventP99S, res.FirstEventMaxS = quantiles(first)
}

// quantiles returns the p50, p99 (nearest rank) and max of v.
func quantiles(v []float64) (p50, p99, maxV float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	slices.Sort(v)
	at := func(q float64) float64 {
		return v[min(max(int(math.Ceil(q*float64(len(v))))-1, 0), len(v)-1)]
	}
	return at(0.50), at(0.99), v[len(v)-1]
}

func (r stormResult) statuses() string {
	if len(r.Statuses) == 0 {
		return ""
	}
	var parts []string
	for code, n := range r.Statuses {
		parts = append(parts, fmt.Sprintf("%s×%d", code, n))
	}
	slices.Sort(parts)
	return " (" + strings.Join(parts, ", ") + ")"
}

func (r stormResult) reads() string {
	var parts []string
	for name, n := range r.ReadCommands {
		parts = append(parts, fmt.Sprintf("%s %d", name, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// line is the human-readable result of one run.
func (r stormResult) line() string {
	var b strings.Builder
	if r.Mode == "cold" {
		fmt.Fprintf(&b, "cold run %d: %d streams on %d channel(s), %.0f events/s: answered 200 %d (p50 %.2f s, p99 %.2f s, max %.2f s from the cold start), non-200 %d%s, first event %d (p50 %.2f s, p99 %.2f s, max %.2f s)",
			r.Run, r.Streams, r.Channels, r.Rate, r.Answered, r.AnswerP50S, r.AnswerP99S, r.AnswerMaxS, r.Non200, r.statuses(),
			r.FirstEvent, r.FirstEventP50S, r.FirstEventP99S, r.FirstEventMaxS)
	} else {
		fmt.Fprintf(&b, "storm run %d: %d streams on %d channel(s), %.0f events/s, down %.1f s, jitter %.1f s: server answering %.2f s after the restart; reconnected %d (p50 %.2f s, p99 %.2f s, max %.2f s from the restart), first event after it sent at %.2f s, caught up %d (p50 %.2f s, p99 %.2f s, max %.2f s), non-200 %d%s",
			r.Run, r.Streams, r.Channels, r.Rate, r.DownS, r.JitterS, r.ReadyS, r.Reconnected, r.ReconnectP50S, r.ReconnectP99S, r.ReconnectMaxS,
			r.NextSentS, r.CaughtUp, r.CaughtUpP50S, r.CaughtUpP99S, r.CaughtUpMaxS, r.Non200, r.statuses())
	}
	if r.SetupNon200+r.SetupBreaks+r.SetupRetries > 0 {
		fmt.Fprintf(&b, "; set-up (%.1f s): %d non-200 retried, %d breaks, %d retries", r.SetupS, r.SetupNon200, r.SetupBreaks, r.SetupRetries)
	}
	fmt.Fprintf(&b, "; lost %d (max %d, %d streams", r.Lost, r.LostMax, r.LostStreams)
	if r.LostBehind > 0 {
		fmt.Fprintf(&b, "; %d on streams still behind at the end", r.LostBehind)
	}
	fmt.Fprintf(&b, "), dup %d (max %d), breaks %d (max %d), gaps %d, retries %d, publish errors %d",
		r.Duplicates, r.DupMax, r.Breaks, r.BreaksMax, r.Gaps, r.Retries, r.PublishErrors)
	fmt.Fprintf(&b, "; in %.1f s: history reads %d [%s], %.1f MB out of Redis (%.0f KB/s before), server %.1f s CPU, RSS %.0f → max %.0f MB, redis conns max %d, generator %.2f cores",
		r.WindowS, r.HistoryReads, r.reads(), float64(r.RedisOutBytes)/1e6, r.RedisOutBytesPerSBefore/1e3, r.ServerCPUS,
		r.RSSBeforeMB, r.RSSMaxMB, r.RedisConnsMax, r.GeneratorCores)
	fmt.Fprintf(&b, "; Redis ran %d commands (%d SUBSCRIBE), %.1f MB in", r.RedisCommands, r.Subscribes, float64(r.RedisInBytes)/1e6)
	if len(r.PresenceSeen) > 0 {
		fmt.Fprintf(&b, "; users on channel 0 by second %v", r.PresenceSeen)
	}
	if s := r.Server; s != nil {
		fmt.Fprintf(&b, "; server: %s", s.summary())
	}
	if s := r.SetupServer; s != nil && len(s.Warnings) > 0 {
		fmt.Fprintf(&b, "; killed server (set-up): %s", s.summary())
	}
	if r.NotReached != "" {
		fmt.Fprintf(&b, "; NOT REACHED: %s", r.NotReached)
	}
	return b.String()
}

func (s *serverStats) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d replayed, %d slow closes", s.Replayed, s.SlowCloses)
	var warns []string
	for msg, n := range s.Warnings {
		warns = append(warns, fmt.Sprintf("%q×%d", msg, n))
	}
	slices.Sort(warns)
	if len(warns) > 0 {
		fmt.Fprintf(&b, ", warnings %s", strings.Join(warns, ", "))
	}
	return b.String()
}

// printStormTable prints the medians over the runs that completed.
func printStormTable(w io.Writer, all []stormResult) {
	var rs []stormResult
	for _, r := range all {
		if r.Error == "" {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		fmt.Fprintln(w, "no run completed")
		return
	}
	m := func(f func(stormResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	type col struct {
		name string
		f    func(stormResult) float64
		prec int
	}
	common := []col{
		{"lost", func(r stormResult) float64 { return float64(r.Lost) }, 0},
		{"lost max", func(r stormResult) float64 { return float64(r.LostMax) }, 0},
		{"dup", func(r stormResult) float64 { return float64(r.Duplicates) }, 0},
		{"non-200", func(r stormResult) float64 { return float64(r.Non200) }, 0},
		{"breaks max", func(r stormResult) float64 { return float64(r.BreaksMax) }, 0},
		{"gaps", func(r stormResult) float64 { return float64(r.Gaps) }, 0},
	}
	var cols []col
	if rs[0].Mode == "cold" {
		cols = []col{
			{"answered", func(r stormResult) float64 { return float64(r.Answered) }, 0},
			{"answer p50 s", func(r stormResult) float64 { return r.AnswerP50S }, 2},
			{"p99 s", func(r stormResult) float64 { return r.AnswerP99S }, 2},
			{"max s", func(r stormResult) float64 { return r.AnswerMaxS }, 2},
			{"1st event p50 s", func(r stormResult) float64 { return r.FirstEventP50S }, 2},
			{"p99 s", func(r stormResult) float64 { return r.FirstEventP99S }, 2},
			{"max s", func(r stormResult) float64 { return r.FirstEventMaxS }, 2},
		}
	} else {
		cols = []col{
			{"reconn p50 s", func(r stormResult) float64 { return r.ReconnectP50S }, 2},
			{"p99 s", func(r stormResult) float64 { return r.ReconnectP99S }, 2},
			{"max s", func(r stormResult) float64 { return r.ReconnectMaxS }, 2},
			{"caught up", func(r stormResult) float64 { return float64(r.CaughtUp) }, 0},
			{"caught p50 s", func(r stormResult) float64 { return r.CaughtUpP50S }, 2},
			{"p99 s", func(r stormResult) float64 { return r.CaughtUpP99S }, 2},
			{"max s", func(r stormResult) float64 { return r.CaughtUpMaxS }, 2},
		}
	}
	cols = append(cols, common...)
	cols = append(cols,
		col{"history reads", func(r stormResult) float64 { return float64(r.HistoryReads) }, 0},
		col{"MB out", func(r stormResult) float64 { return float64(r.RedisOutBytes) / 1e6 }, 1},
		col{"MB in", func(r stormResult) float64 { return float64(r.RedisInBytes) / 1e6 }, 1},
		col{"commands", func(r stormResult) float64 { return float64(r.RedisCommands) }, 0},
		col{"SUBSCRIBE", func(r stormResult) float64 { return float64(r.Subscribes) }, 0},
		col{"redis conns", func(r stormResult) float64 { return float64(r.RedisConnsMax) }, 0},
		col{"RSS max MB", func(r stormResult) float64 { return r.RSSMaxMB }, 0},
	)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "mode\truns\tstreams\tchannels\t")
	for _, c := range cols {
		fmt.Fprintf(tw, "%s\t", c.name)
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t", rs[0].Mode, len(rs), rs[0].Streams, rs[0].Channels)
	for _, c := range cols {
		fmt.Fprintf(tw, "%.*f\t", c.prec, m(c.f))
	}
	fmt.Fprintln(tw)
	tw.Flush()
	if rs[0].Mode == "cold" {
		fmt.Fprintln(w, "times: medians over runs of each run's p50/p99/max over the streams, in seconds from the cold start")
	} else {
		fmt.Fprintln(w, "times: medians over runs of each run's p50/p99/max over the streams, in seconds from the restart of the killed server;")
		fmt.Fprintln(w, "caught up: has every event of its channel from its first connect up to the first one sent after the restart")
	}
	for _, r := range rs {
		if r.NotReached != "" {
			fmt.Fprintf(w, "run %d did not get there: %s\n", r.Run, r.NotReached)
		}
	}
}

// redisStats is what INFO tells of the commands run and the bytes sent.
type redisStats struct {
	cmds              map[string][2]int64 // calls, usec by command ("xrange", "xinfo|stream")
	outBytes, inBytes int64
}

// since returns how many times Redis ran the commands names since before.
func (st redisStats) since(before redisStats, names ...string) int64 {
	var n int64
	for _, name := range names {
		n += st.cmds[name][0] - before.cmds[name][0]
	}
	return n
}

// calls is the number of commands Redis ran.
func (st redisStats) calls() int64 {
	var n int64
	for _, c := range st.cmds {
		n += c[0]
	}
	return n
}

func readRedisStats(rdb *redis.Client) (redisStats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := redisStats{cmds: map[string][2]int64{}}
	for _, section := range []string{"commandstats", "stats"} {
		info, err := rdb.Info(ctx, section).Result()
		if err != nil {
			return st, fmt.Errorf("redis INFO %s: %w", section, err)
		}
		for _, line := range strings.Split(info, "\n") {
			line = strings.TrimSpace(line)
			if v, ok := strings.CutPrefix(line, "total_net_output_bytes:"); ok {
				st.outBytes, _ = strconv.ParseInt(v, 10, 64)
			}
			if v, ok := strings.CutPrefix(line, "total_net_input_bytes:"); ok {
				st.inBytes, _ = strconv.ParseInt(v, 10, 64)
			}
			rest, ok := strings.CutPrefix(line, "cmdstat_")
			if !ok {
				continue
			}
			name, fields, _ := strings.Cut(rest, ":")
			var calls, usec int64
			for _, kv := range strings.Split(fields, ",") {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "calls":
					calls, _ = strconv.ParseInt(v, 10, 64)
				case "usec":
					usec, _ = strconv.ParseInt(v, 10, 64)
				}
			}
			st.cmds[name] = [2]int64{calls, usec}
		}
	}
	return st, nil
}

// streamWrites are the stream commands that write; every other x* command
// reads (xrange, xrevrange, xread, xreadgroup, xlen, xinfo, xpending).
var streamWrites = []string{"xadd", "xtrim", "xdel", "xack", "xsetid", "xclaim", "xautoclaim"}

// readsSince returns the stream read commands run since before: calls,
// microseconds, and calls by command.
func (st redisStats) readsSince(before redisStats) (calls, usec int64, by map[string]int64) {
	by = map[string]int64{}
	for name, now := range st.cmds {
		base, _, _ := strings.Cut(name, "|")
		if !strings.HasPrefix(base, "x") || slices.Contains(streamWrites, base) || base == "xgroup" {
			continue
		}
		was := before.cmds[name]
		if d := now[0] - was[0]; d > 0 {
			by[name] = d
			calls += d
			usec += now[1] - was[1]
		}
	}
	return calls, usec, by
}
