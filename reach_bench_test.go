package ginsse

import (
	"strconv"
	"testing"
)

// BenchmarkCommandScan is what one Disconnect costs a Sender with 15,000
// open streams: the scan of its streams, under the registry's lock.
func BenchmarkCommandScan(b *testing.B) {
	var rs reaches
	for i := range 15000 {
		rs.add(&reach{id: Identity{User: "u" + strconv.Itoa(i), Tags: []string{"tenant-" + strconv.Itoa(i%50)}},
			chans: []string{"user-" + strconv.Itoa(i), "news"}, st: newStream()})
	}
	cmd := &command{Selector: User("nobody").InChannel("news")}
	b.ReportAllocs()
	for b.Loop() {
		if rs.apply(cmd) != 0 {
			b.Fatal("matched")
		}
	}
}

// BenchmarkHeartbeatRaise is what one heartbeat costs a Sender with
// 15,000 open streams: listing them under the registry's lock, then
// waking each. Every stream has a wake-up waiting already, as a busy one
// would; an idle one is woken by a channel send instead.
func BenchmarkHeartbeatRaise(b *testing.B) {
	var rs reaches
	for i := range 15000 {
		rs.add(&reach{id: Identity{User: "u" + strconv.Itoa(i)}, st: newStream()})
	}
	var buf []*stream
	b.ReportAllocs()
	for b.Loop() {
		buf = rs.raise(sigBeat, buf)
	}
}
