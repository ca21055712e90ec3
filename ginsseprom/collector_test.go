package ginsseprom_test

import (
	"context"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/ginsse/ginsse"
	"github.com/ginsse/ginsse/ginsseprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestCollectorReportsSenderStats(t *testing.T) {
	mr := miniredis.RunT(t)
	s, err := ginsse.New(ginsse.Options{Addr: mr.Addr()})
	require.NoError(t, err)
	defer s.Close()
	for range 3 {
		require.NoError(t, s.Publish(context.Background(), "", "x"))
	}
	c := ginsseprom.NewCollector(s)
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP ginsse_events_published_total Events published by this Sender.
# TYPE ginsse_events_published_total counter
ginsse_events_published_total 3
# HELP ginsse_open_streams Streams open now.
# TYPE ginsse_open_streams gauge
ginsse_open_streams 0
`), "ginsse_events_published_total", "ginsse_open_streams"))
	require.Equal(t, 19, testutil.CollectAndCount(c))
}
