package ginsse

import (
	"context"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

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

// BenchmarkFanOut puts one frame into a channel's window, wakes every
// stream of the channel, and has each take its wake-up and read the frame
// at its cursor; ns/delivery is the cost per subscriber. With lag=true
// each delivery is also counted in the delivery lag histogram, as a
// stream's step counts it.
func BenchmarkFanOut(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		for _, lag := range []bool{false, true} {
			b.Run(strconv.Itoa(n)+"/lag="+strconv.FormatBool(lag), func(b *testing.B) { fanOut(b, n, lag) })
		}
	}
}

func fanOut(b *testing.B, n int, lag bool) {
	var lags lagHistogram
	h := newHub(false, defaultQueueSize, defaultQueueSize, 0)
	streams := make([]*stream, n)
	for i := range streams {
		streams[i] = newStream()
		h.add(streams[i], []string{"sse"})
	}
	e := event{data: "hello", retry: -1}
	frames := make([]frame, 256)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		f := &frames[i%len(frames)]
		*f = frame{b: appendFrame(f.b[:0], &e), at: 1000}
		i++
		h.publish("sse", f)
		for _, st := range streams {
			<-st.wake
			m := &st.members[0]
			g := m.t.win.at(m.next)
			if g == nil {
				b.Fatal("frame missing")
			}
			if lag {
				lags.observe(1003 - g.at)
			}
			m.next++
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
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
// stream: its wake-up signal, its place in the hub and its writer. Frames
// are held once per channel, in the channel's window, not per stream. The
// request's goroutine and net/http's buffers are not ginsse's.
func BenchmarkStreamState(b *testing.B) {
	h := newHub(true, defaultReplayWindow, defaultQueueSize, 0)
	s := &Sender{opts: Options{QueueSize: defaultQueueSize, History: 1000}, hub: h}
	b.ReportAllocs()
	for b.Loop() {
		st := newStream()
		h.add(st, []string{"sse"})
		d := &delivery{streamWriter: streamWriter{s: s, rc: http.NewResponseController(nil), chans: []string{"sse"}}, st: st}
		step := func(out io.Writer) bool { return d.step(out) }
		_ = step
	}
}

// BenchmarkChannelMemory is what a channel of its own costs a stream: n
// streams open on n channels (each with one event in its history), and
// heap-B/channel is the heap they hold beyond n streams on one shared
// channel, after a collection. The request's goroutine and net/http's
// buffers are the same either way and not counted.
func BenchmarkChannelMemory(b *testing.B) {
	const n = 5000
	mr := miniredis.RunT(b)
	s, err := New(Options{Addr: mr.Addr(), History: 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	names := make([]string, n)
	for i := range names {
		names[i] = "user-" + strconv.Itoa(i)
		if err := s.Publish(context.Background(), "note", "hello", Channel(names[i])); err != nil {
			b.Fatal(err)
		}
	}
	var own, shared float64
	for b.Loop() {
		shared = heapHeld(b, s, func(i int) string { return "news" }, n)
		own = heapHeld(b, s, func(i int) string { return names[i] }, n)
	}
	b.ReportMetric((own-shared)/n, "heap-B/channel")
}

// heapHeld opens n streams, stream i on channel name(i), waits until
// every channel is live, and returns the heap they hold; it closes them
// before it returns.
func heapHeld(b *testing.B, s *Sender, name func(int) string, n int) float64 {
	before := heapInUse()
	streams := make([]*stream, n)
	for i := range streams {
		streams[i] = newStream()
		s.subscribe(streams[i], []string{s.opts.Prefix + name(i)})
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, st := range streams {
		w := &st.members[0].t.win
		for {
			w.mu.Lock()
			live := w.state == winLive
			w.mu.Unlock()
			if live {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("channels not live after 30 s")
			}
			time.Sleep(time.Millisecond) // a benchmark's wait: no signal tells a window went live
		}
	}
	held := heapInUse() - before
	for _, st := range streams {
		s.unsubscribe(st)
	}
	return held
}

func heapInUse() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse)
}
