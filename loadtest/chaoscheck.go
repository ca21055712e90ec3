package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// chaosReport is what a chaos run came to, by the fault each anomaly
// followed.
type chaosReport struct {
	Seconds    float64
	Streams    int
	Channels   int
	Published  int // events Redis holds
	Acked      int // sends answered 2xx
	Failed     int // sends answered with an error, or not at all
	Delivered  int
	Reconnects int
	// Gone counts gaps Redis caused: the stream's position was no longer
	// in the history.
	Gone      int
	Non200    int      // streams stopped by an answer other than 200
	Kinds     []string // the faults of the run, in the schedule's order
	ByFault   map[string]*faultFigures
	AckedLost int // sends answered 2xx whose event Redis does not hold
	// StoredTwice counts events Redis holds more than once: a send
	// applied twice.
	StoredTwice int
}

// faultFigures are the anomalies that followed one kind of fault.
type faultFigures struct {
	Faults int
	// Lost are entries Redis holds that a stream skipped or never reached;
	// Duplicates entries a stream got twice or out of order; Gaps
	// ginsse-gap events for a position Redis still held.
	Lost, Duplicates, Gaps int
	// Replication counts sends answered 2xx that the cluster lost with a
	// master: Redis replicates asynchronously (see the README's Delivery
	// guarantees); the soak reports them and does not count them as
	// ginsse's.
	Replication int
}

var chaosData = regexp.MustCompile(`chaos:[0-9]+`)

// check reads every channel's history and checks each stream against it.
func (c *chaos) check() (*chaosReport, error) {
	rep := &chaosReport{Seconds: c.cfg.duration.Seconds(), Streams: len(c.clients), Channels: len(c.names),
		ByFault: map[string]*faultFigures{}}
	rep.Kinds = append([]string{faultNone}, c.cfg.kinds()...)
	for _, k := range rep.Kinds {
		rep.ByFault[k] = &faultFigures{}
	}
	for _, f := range c.faults {
		rep.ByFault[f.kind].Faults++
	}
	hist := make([][]string, len(c.names))
	stored := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, name := range c.names {
		msgs, err := c.rdb.XRange(ctx, "{"+name+"}:history", "-", "+").Result()
		if err != nil {
			return nil, fmt.Errorf("read history of %s: %w", name, err)
		}
		for _, m := range msgs {
			hist[i] = append(hist[i], m.ID)
			p, _ := m.Values["p"].(string)
			stored[chaosData.FindString(p)]++
		}
		rep.Published += len(msgs)
	}
	for data, at := range c.pub.acked {
		if at.IsZero() {
			continue
		}
		rep.Acked++
		if stored[data] == 0 {
			if c.masterKilledSoonAfter(at) {
				rep.ByFault[faultMaster].Replication++
			} else {
				rep.AckedLost++
			}
		}
	}
	rep.Failed = c.pub.failed
	for _, n := range stored {
		if n > 1 {
			rep.StoredTwice += n - 1
		}
	}
	for _, cl := range c.clients {
		c.checkClient(rep, cl, hist[cl.ch])
	}
	return rep, nil
}

// checkClient walks one stream's events against its channel's history.
// A fresh stream's start is its first event: what came before it is not
// checked.
func (c *chaos) checkClient(rep *chaosReport, cl *chaosClient, hist []string) {
	rep.Reconnects += cl.reconnects
	if cl.status != 0 {
		rep.Non200++
	}
	held := make(map[string]bool, len(hist))
	for _, id := range hist {
		held[id] = true
	}
	prev, gapped := "", false
	for _, r := range cl.log {
		if r.gap {
			if prev != "" && held[prev] {
				rep.ByFault[c.faultAt(r.at)].Gaps++
			} else {
				rep.Gone++
			}
			prev, gapped = "", true
			continue
		}
		rep.Delivered++
		if prev != "" && !idLess(prev, r.id) {
			rep.ByFault[c.faultAt(idTime(r.id))].Duplicates++
			continue
		}
		if prev != "" || gapped {
			c.countLost(rep, hist, prev, r.id)
		}
		prev, gapped = r.id, false
	}
	if prev != "" {
		c.countLost(rep, hist, prev, "")
	}
}

// countLost counts the entries of hist after from and before to (zero:
// the end).
func (c *chaos) countLost(rep *chaosReport, hist []string, from, to string) {
	for _, id := range hist {
		if from != "" && !idLess(from, id) {
			continue
		}
		if to != "" && !idLess(id, to) {
			break
		}
		rep.ByFault[c.faultAt(idTime(id))].Lost++
	}
}

// faultAt is the kind of the last fault before t.
func (c *chaos) faultAt(t time.Time) string {
	kind := faultNone
	for _, f := range c.faults {
		if f.at.After(t) {
			break
		}
		kind = f.kind
	}
	return kind
}

// masterKilledSoonAfter reports whether a master was killed within a
// second or two after t: an event it acknowledged by then may not have
// reached its replica.
func (c *chaos) masterKilledSoonAfter(t time.Time) bool {
	for _, f := range c.faults {
		if f.kind == faultMaster && !f.at.Before(t) && f.at.Sub(t) < 2*time.Second {
			return true
		}
	}
	return false
}

// idLess orders two stream entry ids, "ms-seq".
func idLess(a, b string) bool {
	am, as := splitID(a)
	bm, bs := splitID(b)
	return am < bm || am == bm && as < bs
}

func splitID(id string) (ms, seq uint64) {
	m, s, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(s, 10, 64)
	return ms, seq
}

// idTime is when Redis added the entry.
func idTime(id string) time.Time {
	ms, _ := splitID(id)
	return time.UnixMilli(int64(ms))
}

// anomalies counts what the promise rules out: lost, repeated or wrongly
// gapped events, and acknowledged sends Redis does not hold once.
func (r *chaosReport) anomalies() int {
	n := r.AckedLost + r.StoredTwice
	for _, f := range r.ByFault {
		n += f.Lost + f.Duplicates + f.Gaps
	}
	return n
}

func (r *chaosReport) print(w io.Writer) {
	fmt.Fprintf(w, "chaos: %.0f s, %d streams on %d channels, %d events in Redis (%d sends answered 2xx, %d failed), %d delivered, %d reconnects\n",
		r.Seconds, r.Streams, r.Channels, r.Published, r.Acked, r.Failed, r.Delivered, r.Reconnects)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "after\tfaults\tlost\tduplicates\tgaps Redis did not cause\t2xx lost by replication\t")
	for _, k := range r.Kinds {
		f := r.ByFault[k]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t\n", k, f.Faults, f.Lost, f.Duplicates, f.Gaps, f.Replication)
	}
	tw.Flush()
	fmt.Fprintf(w, "gaps Redis caused (position no longer held): %d; 2xx sends Redis does not hold: %d; events stored twice: %d; streams refused: %d\n",
		r.Gone, r.AckedLost, r.StoredTwice, r.Non200)
}

func (r *chaosReport) writeJSON(path string) error {
	b, _ := json.MarshalIndent(r, "", "  ")
	return os.WriteFile(path, b, 0o644)
}
