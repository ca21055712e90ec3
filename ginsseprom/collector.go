// Package ginsseprom exports a ginsse Sender's figures to Prometheus. It
// lives apart so that the ginsse package itself does not import
// Prometheus.
//
//	registry.MustRegister(ginsseprom.NewCollector(events))
//	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(registry, promhttp.HandlerOpts{})))
package ginsseprom

import (
	"github.com/ginsse/ginsse"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector is a prometheus.Collector for one Sender. Every scrape reads
// Sender.Stats, which costs a few atomic loads and one read lock.
type Collector struct {
	s       *ginsse.Sender
	metrics []metric
	lag     *prometheus.Desc
}

type metric struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(ginsse.Stats) float64
}

// NewCollector returns a Collector for s. Its metric names start with
// "ginsse_".
func NewCollector(s *ginsse.Sender) *Collector {
	m := func(name, help string, kind prometheus.ValueType, value func(ginsse.Stats) float64) metric {
		return metric{prometheus.NewDesc("ginsse_"+name, help, nil, nil), kind, value}
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	lag := prometheus.NewDesc("ginsse_delivery_lag_seconds",
		"Time from an event's publish to its write to a client, for live events; as good as the clocks of Redis (with history) or the publishing Sender (StampTime) and this one agree.", nil, nil)
	return &Collector{s: s, lag: lag, metrics: []metric{
		m("open_streams", "Streams open now.", gauge, func(st ginsse.Stats) float64 { return float64(st.Streams) }),
		m("subscribed_channels", "Redis channels subscribed now.", gauge, func(st ginsse.Stats) float64 { return float64(st.Channels) }),
		m("events_published_total", "Events published by this Sender.", counter, func(st ginsse.Stats) float64 { return float64(st.Published) }),
		m("publish_errors_total", "Publishes that failed.", counter, func(st ginsse.Stats) float64 { return float64(st.PublishErrors) }),
		m("frames_delivered_total", "Frames written to clients.", counter, func(st ginsse.Stats) float64 { return float64(st.Delivered) }),
		m("slow_closes_total", "Streams closed because their client could not keep up.", counter, func(st ginsse.Stats) float64 { return float64(st.SlowCloses) }),
		m("redis_reconnects_total", "Times the subscription came back after losing Redis.", counter, func(st ginsse.Stats) float64 { return float64(st.Reconnects) }),
		m("replayed_events_total", "Events sent from history to resuming streams.", counter, func(st ginsse.Stats) float64 { return float64(st.Replayed) }),
		m("history_reads_total", "History reads sent to Redis.", counter, func(st ginsse.Stats) float64 { return float64(st.HistoryReads) }),
		m("outage_opens_total", "Streams that answered 200 before Redis confirmed their channels, and waited for them.", counter, func(st ginsse.Stats) float64 { return float64(st.OutageOpens) }),
		m("shed_streams_total", "Streams sent away with a retry hint because MaxStreams were open.", counter, func(st ginsse.Stats) float64 { return float64(st.Shed) }),
		m("expired_streams_total", "Streams ended with a retry hint because their identity expired.", counter, func(st ginsse.Stats) float64 { return float64(st.Expired) }),
		m("rotated_streams_total", "Streams ended with a retry hint at MaxStreamAge.", counter, func(st ginsse.Stats) float64 { return float64(st.Rotated) }),
		m("revoked_streams_total", "Streams ended by Disconnect.", counter, func(st ginsse.Stats) float64 { return float64(st.Revoked) }),
		m("presence_entries", "Users on channels this Sender reports to presence.", gauge, func(st ginsse.Stats) float64 { return float64(st.PresenceEntries) }),
		m("presence_writes_total", "Redis commands written for presence.", counter, func(st ginsse.Stats) float64 { return float64(st.PresenceWrites) }),
		m("identity_refreshes_total", "Stream identities extended by Options.Refresh.", counter, func(st ginsse.Stats) float64 { return float64(st.Refreshes) }),
		m("window_bytes", "Bytes of frames the channels' replay windows hold now.", gauge, func(st ginsse.Stats) float64 { return float64(st.WindowBytes) }),
	}}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
	ch <- c.lag
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	for _, m := range c.metrics {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(st))
	}
	h := st.DeliveryLag
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		cum += uint64(h.Counts[i])
		buckets[b.Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(c.lag, uint64(h.Count), h.Sum.Seconds(), buckets)
}
