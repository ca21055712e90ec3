package ginsse

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
)

func BenchmarkEncodeFrame(b *testing.B) {
	e := event{typ: "update", id: "1732491234567-0", retry: -1, data: `{"order":42,"status":"shipped"}`}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = appendFrame(buf[:0], &e)
	}
}

// BenchmarkFanOut queues one shared frame to every stream of a channel and
// takes it off again; ns/delivery is the cost per subscriber.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			h := newHub()
			streams := make([]*stream, n)
			for i := range streams {
				streams[i] = newStream(1, false)
				h.add(streams[i], []string{"sse"})
			}
			e := event{data: "hello", retry: -1}
			f := newFrame(&e, position{})
			b.ReportAllocs()
			for b.Loop() {
				h.publish("sse", f)
				for _, st := range streams {
					<-st.queue
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
		})
	}
}

func BenchmarkPublish(b *testing.B) {
	for _, history := range []int{0, 1000} {
		b.Run("history="+strconv.Itoa(history), func(b *testing.B) {
			mr := miniredis.RunT(b)
			s, err := New(Options{Addr: mr.Addr(), History: history})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := strings.Repeat("x", 100)
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := s.Publish(ctx, "update", data); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkStreamState measures what ginsse itself keeps for one open
// stream: its queue, its place in the hub and its writer. The request's
// goroutine and net/http's buffers are not ginsse's.
func BenchmarkStreamState(b *testing.B) {
	h := newHub()
	s := &Sender{opts: Options{QueueSize: defaultQueueSize}}
	b.ReportAllocs()
	for b.Loop() {
		st := newStream(s.opts.QueueSize, false)
		h.add(st, []string{"sse"})
		w := &streamWriter{s: s, rc: http.NewResponseController(nil), chans: []string{"sse"}}
		step := func(out io.Writer) bool { return w.drain(context.Background(), out, st, nil) }
		_ = step
	}
}
