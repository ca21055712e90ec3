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
