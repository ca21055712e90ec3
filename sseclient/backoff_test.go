package sseclient_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/ginsse/ginsse/sseclient"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBackoff(t *testing.T) {
	none := func(int64) int64 { return 0 }
	most := func(n int64) int64 { return n - 1 }
	const s = time.Second
	for _, tc := range []struct {
		name         string
		retry, limit time.Duration
		failures     int
		jitter       func(int64) int64
		want         time.Duration
	}{
		{"after a stream ends: the reconnection time", 3 * s, 30 * s, 0, none, 3 * s},
		{"each failure doubles it", 3 * s, 30 * s, 1, none, 6 * s},
		{"twice", 3 * s, 30 * s, 2, none, 12 * s},
		{"three times", 3 * s, 30 * s, 3, none, 24 * s},
		{"bounded", 3 * s, 30 * s, 4, none, 30 * s},
		{"bounded after many", 3 * s, 30 * s, 1000, none, 30 * s},
		{"jitter adds up to a quarter", 4 * s, 30 * s, 0, most, 5 * s},
		{"jitter stays within the bound", 3 * s, 30 * s, 4, most, 30 * s},
		{"a server's retry over the bound", time.Hour, 30 * s, 0, none, 30 * s},
		{"retry 0 reconnects at once", 0, 30 * s, 0, most, 0},
		{"retry 0 still backs off on failures", 0, 30 * s, 1, none, 2 * sseclient.MinBackoff},
	} {
		assert.Equal(t, tc.want, sseclient.Backoff(tc.retry, tc.limit, tc.failures, tc.jitter), tc.name)
	}
}

// TestRetryHintAndBackoff measures the waits on the server's side: each
// request arrives no sooner than the wait the Client chose after the one
// before, and the waits follow the server's retry and double within
// MaxBackoff.
func TestRetryHintAndBackoff(t *testing.T) {
	srv := serve(t, false, func(w http.ResponseWriter, r *http.Request, n int) {
		switch n {
		case 0:
			stream(w, "retry: 40\n\n") // and ends: reconnect after 40ms
		case 1, 2:
			http.Error(w, "down", http.StatusServiceUnavailable)
		default:
			stream(w, "data: back\n\n")
			hold(r)
		}
	})
	st := newStates()
	const limit = 300 * time.Millisecond
	c := newClient(t, srv.URL, sseclient.Options{Retry: 250 * time.Millisecond, MaxBackoff: limit, KeepRetrying: true, OnState: st.record})
	got, err := collect(testContext(t), c, 1)
	require.NoError(t, err)
	assert.Equal(t, "back", got[0].Data)

	var delays []time.Duration
	for _, ch := range st.list() {
		if ch.State == sseclient.Reconnecting {
			delays = append(delays, ch.Delay)
		}
	}
	require.Len(t, delays, 3)
	assert.GreaterOrEqual(t, delays[0], 40*time.Millisecond, "the server's retry, not Options.Retry")
	assert.LessOrEqual(t, delays[0], 50*time.Millisecond)
	assert.GreaterOrEqual(t, delays[1], 2*sseclient.MinBackoff, "a failure doubles the wait")
	assert.LessOrEqual(t, delays[1], 2*sseclient.MinBackoff*5/4)
	assert.Equal(t, limit, delays[2], "bounded by MaxBackoff")

	reqs := srv.seen()
	require.Len(t, reqs, 4)
	for i, d := range delays {
		gap := reqs[i+1].at.Sub(reqs[i].at)
		assert.GreaterOrEqual(t, gap, d, "request %d came after the wait", i+1)
		assert.Less(t, gap, d+time.Second, "request %d came soon after the wait", i+1)
	}
}
